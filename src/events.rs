//! Event types, events, append requests and their results.
//!
//! A process declares its event types at registration; each carries a JSON
//! Schema for its payload and *semantics*: whether an event of the type ends
//! the process (terminal) and whether it wakes a session (wake). At append
//! time the declared [`ProcessEventSemanticsSpec`] is *materialized* into the
//! concrete [`ProcessEventSemantics`] stored on the event, as section 4 of
//! the specification describes (step 6 of an append).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{CausalRef, SessionScope};
use crate::rules::hashing::sha256_hex_of_json;

/// `process.cancel_requested`: a request to cancel; requires a replay key.
pub const CANCEL_REQUESTED: &str = "process.cancel_requested";
/// `process.waiting`: the process started waiting.
pub const WAITING: &str = "process.waiting";
/// `process.resumed`: the process stopped waiting.
pub const RESUMED: &str = "process.resumed";
/// `process.completed`: terminal, state `Completed`.
pub const COMPLETED: &str = "process.completed";
/// `process.failed`: terminal, state `Failed`.
pub const FAILED: &str = "process.failed";
/// `process.cancelled`: terminal, state `Cancelled`.
pub const CANCELLED: &str = "process.cancelled";

/// The names of the [`core_event_types`], in their order.
pub const CORE_EVENT_TYPE_NAMES: [&str; 6] = [CANCEL_REQUESTED, WAITING, RESUMED, COMPLETED, FAILED, CANCELLED];

/// The core event types every process declares (added at registration
/// when a registration does not declare them itself).
pub fn core_event_types() -> Vec<ProcessEventType> {
    let object = json!({ "type": "object" });
    let terminal = |name: &str, state| {
        ProcessEventType::new(name, object.clone()).with_terminal(ProcessTerminalSpec {
            state,
            await_output: Some(ProcessValueSelector::Pointer("/await_output".to_owned())),
        })
    };
    vec![
        ProcessEventType::new(CANCEL_REQUESTED, object.clone()),
        ProcessEventType::new(WAITING, object.clone()),
        ProcessEventType::new(RESUMED, object.clone()),
        terminal(COMPLETED, ProcessTerminalState::Completed),
        terminal(FAILED, ProcessTerminalState::Failed),
        terminal(CANCELLED, ProcessTerminalState::Cancelled),
    ]
}

/// A declared event type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventType {
    /// Unique, non-empty name.
    pub name: String,
    /// A JSON Schema every payload of this type must satisfy.
    pub payload_schema: Value,
    /// Terminal and wake semantics.
    #[serde(default)]
    pub semantics: ProcessEventSemanticsSpec,
}

impl ProcessEventType {
    /// A plain event type (no terminal or wake semantics).
    pub fn new(name: impl Into<String>, payload_schema: Value) -> Self {
        Self { name: name.into(), payload_schema, semantics: ProcessEventSemanticsSpec::default() }
    }

    /// Makes events of this type terminal.
    #[must_use]
    pub fn with_terminal(mut self, terminal: ProcessTerminalSpec) -> Self {
        self.semantics.terminal = Some(terminal);
        self
    }

    /// Makes events of this type wake a session.
    #[must_use]
    pub fn with_wake(mut self, wake: ProcessWakeSpec) -> Self {
        self.semantics.wake = Some(wake);
        self
    }

    /// True when events of this type end the process.
    pub fn is_terminal(&self) -> bool {
        self.semantics.terminal.is_some()
    }
}

/// Declared semantics of an event type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventSemanticsSpec {
    /// Events of this type end the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<ProcessTerminalSpec>,
    /// Events of this type wake a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<ProcessWakeSpec>,
}

/// The terminal states a process can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessTerminalState {
    /// Success.
    Completed,
    /// Failure.
    Failed,
    /// Cancellation.
    Cancelled,
}

impl ProcessTerminalState {
    /// The core event type that carries this state.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Completed => COMPLETED,
            Self::Failed => FAILED,
            Self::Cancelled => CANCELLED,
        }
    }
}

/// How a terminal event type ends the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTerminalSpec {
    /// The state the process ends in.
    pub state: ProcessTerminalState,
    /// Selects the await output from the payload. Required unless `state`
    /// is `Completed` (which then uses the whole payload).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub await_output: Option<ProcessValueSelector>,
}

/// How an event type wakes a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessWakeSpec {
    /// No wake when this selects a falsy value (null, false, "", [], {}).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<ProcessValueSelector>,
    /// Selects the wake input (rendered as a string).
    pub input: ProcessValueSelector,
    /// How wakes are deduplicated.
    #[serde(default)]
    pub dedupe_key: ProcessWakeDedupeKey,
}

impl ProcessWakeSpec {
    /// A wake on every event, with `input` and event-identity dedupe.
    pub fn new(input: ProcessValueSelector) -> Self {
        Self { when: None, input, dedupe_key: ProcessWakeDedupeKey::EventIdentity }
    }

    /// Only wake when `when` selects a truthy value.
    #[must_use]
    pub fn with_when(mut self, when: ProcessValueSelector) -> Self {
        self.when = Some(when);
        self
    }

    /// Sets the dedupe key.
    #[must_use]
    pub fn with_dedupe_key(mut self, dedupe_key: ProcessWakeDedupeKey) -> Self {
        self.dedupe_key = dedupe_key;
        self
    }
}

/// How a wake's dedupe key is formed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ProcessWakeDedupeKey {
    /// `{process_id}:{sequence}`: every event wakes once.
    #[default]
    EventIdentity,
    /// The selected value's string.
    Selector(ProcessValueSelector),
    /// A constant: every event of the type collapses into one wake per target.
    Const(String),
}

/// Selects a value from an event payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ProcessValueSelector {
    /// The whole payload.
    Payload,
    /// The value at a JSON pointer; it must exist.
    Pointer(String),
    /// A constant.
    Const(Value),
    /// A string with `{name}` replaced by each field's selected string.
    Template {
        /// The template text.
        template: String,
        /// The fields substituted into it.
        fields: BTreeMap<String, ProcessValueSelector>,
    },
    /// `true` when the pointer exists in the payload, else `false`.
    Present(String),
}

/// What `await_process` returns once a process is terminal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessAwaitOutput {
    /// The process completed with a value.
    Success {
        /// The result.
        value: Value,
    },
    /// The process failed.
    Failure {
        /// A machine-readable code.
        code: String,
        /// A human message.
        message: String,
        /// The raw failure value, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw: Option<Value>,
    },
    /// The process was cancelled.
    Cancelled {
        /// A human message.
        message: String,
        /// The raw cancellation value, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        raw: Option<Value>,
    },
}

impl ProcessAwaitOutput {
    /// A success with `value`.
    pub fn success(value: Value) -> Self {
        Self::Success { value }
    }

    /// A failure with `code` and `message`.
    pub fn failure(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Failure { code: code.into(), message: message.into(), raw: None }
    }

    /// A cancellation with `message`.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::Cancelled { message: message.into(), raw: None }
    }

    /// The terminal state this output belongs to.
    pub fn terminal_state(&self) -> ProcessTerminalState {
        match self {
            Self::Success { .. } => ProcessTerminalState::Completed,
            Self::Failure { .. } => ProcessTerminalState::Failed,
            Self::Cancelled { .. } => ProcessTerminalState::Cancelled,
        }
    }
}

/// One committed event of a process's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEvent {
    /// The process.
    pub process_id: String,
    /// Position in the log, from 1, gapless.
    pub sequence: u64,
    /// The declared type.
    pub event_type: String,
    /// The validated payload.
    pub payload: Value,
    /// Lineage of the append.
    pub invocation: ProcessEventInvocation,
    /// Materialized semantics.
    pub semantics: ProcessEventSemantics,
    /// Commit time.
    pub occurred_at_ms: u64,
}

impl ProcessEvent {
    /// True when the event ended the process.
    pub fn is_terminal(&self) -> bool {
        self.semantics.terminal.is_some()
    }

    /// True when the event materialized a wake.
    pub fn is_wake(&self) -> bool {
        self.semantics.wake.is_some()
    }
}

/// Materialized semantics of one event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventSemantics {
    /// Set when the event ended the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<ProcessTerminalSemantics>,
    /// Set when the event wakes a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake: Option<ProcessWakeSemantics>,
}

/// How an event ended its process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessTerminalSemantics {
    /// The terminal state.
    pub state: ProcessTerminalState,
    /// What `await_process` returns.
    pub await_output: ProcessAwaitOutput,
}

/// The wake an event materialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessWakeSemantics {
    /// The wake input, as a string.
    pub input: String,
    /// The dedupe key.
    pub dedupe_key: String,
}

/// The scope an invocation ran in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvocationScope {
    /// The registry runtime.
    #[default]
    Runtime,
}

/// What an invocation produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvocationSubject {
    /// One process event.
    ProcessEvent {
        /// The process.
        process_id: String,
        /// The event's sequence.
        sequence: u64,
        /// The event's type.
        event_type: String,
    },
}

/// Lineage stamped on every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventInvocation {
    /// Always [`InvocationScope::Runtime`].
    pub scope: InvocationScope,
    /// The event itself.
    pub subject: InvocationSubject,
    /// The process that appended it.
    pub caused_by: CausalRef,
    /// The request's replay key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_key: Option<String>,
}

/// A request to append one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventAppendRequest {
    /// The declared type.
    pub event_type: String,
    /// The payload.
    pub payload: Value,
    /// The replay key: repeating a request with the same key and payload
    /// returns the original event instead of appending again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// Where a wake is delivered (overrides the record's `wake_target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_target_scope: Option<SessionScope>,
}

impl ProcessEventAppendRequest {
    /// An append of `payload` as `event_type`, with no replay key.
    pub fn new(event_type: impl Into<String>, payload: Value) -> Self {
        Self { event_type: event_type.into(), payload, replay: None, wake_target_scope: None }
    }

    /// Sets the replay key.
    #[must_use]
    pub fn with_replay_key(mut self, key: impl Into<String>) -> Self {
        self.replay = Some(key.into());
        self
    }

    /// Sets the wake target scope.
    #[must_use]
    pub fn with_wake_target_scope(mut self, scope: SessionScope) -> Self {
        self.wake_target_scope = Some(scope);
        self
    }

    /// The replay key, if the request has a non-empty one. An empty key is
    /// no key: it dedupes nothing (the spec's step 4 counts it as missing),
    /// so every rule that asks whether a request is keyed (replay, required
    /// keys, whether a lost answer may be sent again) asks this.
    pub fn replay_key(&self) -> Option<&str> {
        self.replay.as_deref().filter(|key| !key.is_empty())
    }

    /// A `process.cancel_requested` request whose replay key is derived from
    /// its payload, so repeating it is idempotent.
    pub fn cancel_requested(process_id: &str, reason: impl Into<String>) -> Self {
        let payload = json!({ "reason": reason.into() });
        let digest = sha256_hex_of_json(&payload);
        Self::new(CANCEL_REQUESTED, payload).with_replay_key(format!("process:{process_id}:cancel_requested:{digest}"))
    }
}

/// The result of an append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEventAppendResult {
    /// The committed event (the original one on a replay).
    pub event: ProcessEvent,
    /// The wake to deliver, when the event woke and a target exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_delivery: Option<ProcessWakeDelivery>,
}

/// A wake addressed to one session scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessWakeDelivery {
    /// `wake:` + SHA-256 hex of `(target_scope_id, dedupe_key)`.
    pub wake_id: String,
    /// The target session.
    pub target_session_id: String,
    /// The target scope's id.
    pub target_scope_id: String,
    /// The waking process.
    pub process_id: String,
    /// The waking event's sequence.
    pub sequence: u64,
    /// The waking event's type.
    pub event_type: String,
    /// The waking event's invocation.
    pub event_invocation: ProcessEventInvocation,
    /// The process provenance's `caused_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_caused_by: Option<CausalRef>,
    /// The materialized dedupe key.
    pub dedupe_key: String,
    /// The materialized wake input.
    pub input: String,
    /// When the delivery was materialized.
    pub created_at_ms: u64,
}
