//! The registry's data model: registrations, records, grants, leases.
//!
//! These are plain serde types with no behaviour beyond builders and small
//! accessors; the rules that act on them are internal to the crate. Times are
//! epoch milliseconds.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::{core_event_types, ProcessAwaitOutput, ProcessEventType, ProcessTerminalState};

/// What a registry guarantees about committed changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityTier {
    /// Changes live in memory: they survive actor restarts, not the process.
    #[default]
    Inline,
    /// Changes are journaled before the call returns and survive a crash.
    Durable,
}

/// What separates the session id from the frame id in a [`SessionScopeId`];
/// no session id or frame id the registry accepts contains it.
pub const FRAME_SEPARATOR: &str = "/frame:";

/// A chat/agent session, optionally narrowed to one agent frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionScope {
    /// The session.
    pub session_id: String,
    /// The agent frame inside the session, if the scope is that narrow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_frame_id: Option<String>,
}

impl SessionScope {
    /// The whole session.
    pub fn new(session_id: impl Into<String>) -> Self {
        Self { session_id: session_id.into(), agent_frame_id: None }
    }

    /// One agent frame of the session.
    pub fn with_frame(session_id: impl Into<String>, agent_frame_id: impl Into<String>) -> Self {
        Self { session_id: session_id.into(), agent_frame_id: Some(agent_frame_id.into()) }
    }

    /// The key grants are stored under: `session:{session_id}`, or
    /// `session:{session_id}/frame:{frame}` for a non-empty frame.
    ///
    /// The registry refuses scopes whose session id is empty or whose
    /// session or frame id contains [`FRAME_SEPARATOR`], so that no two
    /// scopes it accepts share an id
    /// ([`RegistryError::InvalidScope`](crate::RegistryError::InvalidScope)).
    pub fn id(&self) -> SessionScopeId {
        match self.agent_frame_id.as_deref() {
            Some(frame) if !frame.is_empty() => {
                SessionScopeId(format!("session:{}{FRAME_SEPARATOR}{frame}", self.session_id))
            }
            _ => SessionScopeId(format!("session:{}", self.session_id)),
        }
    }
}

/// The stable string id of a [`SessionScope`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionScopeId(pub String);

impl SessionScopeId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionScopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who started a process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessOriginator {
    /// The host runtime itself.
    #[default]
    Host,
    /// A session (or one of its frames).
    Session {
        /// The scope that started the process.
        scope: SessionScope,
    },
}

/// What caused something: a process, one of its events, a session, or an
/// outside system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CausalRef {
    /// A process.
    Process {
        /// The causing process.
        process_id: String,
    },
    /// One event of a process.
    ProcessEvent {
        /// The process of the event.
        process_id: String,
        /// The event's sequence.
        sequence: u64,
    },
    /// A session scope.
    Session {
        /// The causing scope.
        scope: SessionScope,
    },
    /// Something outside the registry (a tool call, a queue message, ...).
    External {
        /// The kind of cause, for example `tool_call`.
        kind: String,
        /// Its id in that system.
        id: String,
    },
}

/// Where a process came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessProvenance {
    /// Who started it.
    pub originator: ProcessOriginator,
    /// The host profile the process runs under; must be non-empty.
    pub host_profile_id: String,
    /// What caused the start, copied into every wake delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<CausalRef>,
}

impl ProcessProvenance {
    /// Started by the host under `host_profile_id`, with no recorded cause.
    pub fn host(host_profile_id: impl Into<String>) -> Self {
        Self { originator: ProcessOriginator::Host, host_profile_id: host_profile_id.into(), caused_by: None }
    }

    /// Started by a session scope under `host_profile_id`.
    pub fn session(scope: SessionScope, host_profile_id: impl Into<String>) -> Self {
        Self {
            originator: ProcessOriginator::Session { scope },
            host_profile_id: host_profile_id.into(),
            caused_by: None,
        }
    }

    /// Records what caused the start.
    #[must_use]
    pub fn with_caused_by(mut self, caused_by: CausalRef) -> Self {
        self.caused_by = Some(caused_by);
        self
    }
}

impl Default for ProcessProvenance {
    fn default() -> Self {
        Self::host("default")
    }
}

/// What a process runs; opaque to the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProcessInput {
    /// Work accepted by another system.
    External {
        /// Whatever that system needs to find the work again.
        metadata: Value,
    },
    /// A named definition the host knows how to run.
    Definition {
        /// The definition's name (what [`ProcessListFilter::definition`] matches).
        name: String,
        /// Its arguments.
        args: Map<String, Value>,
    },
}

impl ProcessInput {
    /// A named definition with arguments.
    pub fn definition(name: impl Into<String>, args: Map<String, Value>) -> Self {
        Self::Definition { name: name.into(), args }
    }

    /// External work described by `metadata`.
    pub fn external(metadata: Value) -> Self {
        Self::External { metadata }
    }

    /// The definition name, for [`ProcessInput::Definition`].
    pub fn definition_name(&self) -> Option<&str> {
        match self {
            Self::Definition { name, .. } => Some(name),
            Self::External { .. } => None,
        }
    }
}

/// Everything needed to register a process. Registering the same
/// registration twice is idempotent: two registrations are the same when
/// the SHA-256 of their canonical JSON (core event types added) is equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRegistration {
    /// The process id, chosen by the caller (idempotency key).
    pub id: String,
    /// What the process runs.
    pub input: ProcessInput,
    /// The event types the process may append.
    pub event_types: Vec<ProcessEventType>,
    /// Where it came from.
    pub provenance: ProcessProvenance,
    /// An opaque reference to the execution environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_ref: Option<String>,
    /// The default scope wakes are delivered to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_target: Option<SessionScope>,
}

impl ProcessRegistration {
    /// A registration with the core event types, host provenance under
    /// profile `default`, no env and no wake target.
    pub fn new(id: impl Into<String>, input: ProcessInput) -> Self {
        Self {
            id: id.into(),
            input,
            event_types: core_event_types(),
            provenance: ProcessProvenance::default(),
            env_ref: None,
            wake_target: None,
        }
    }

    /// Adds event types to the declared ones.
    #[must_use]
    pub fn with_extra_event_types(mut self, event_types: impl IntoIterator<Item = ProcessEventType>) -> Self {
        self.event_types.extend(event_types);
        self
    }

    /// Replaces the declared event types (core types are added back at
    /// registration when missing).
    #[must_use]
    pub fn with_event_types(mut self, event_types: impl IntoIterator<Item = ProcessEventType>) -> Self {
        self.event_types = event_types.into_iter().collect();
        self
    }

    /// Sets the provenance.
    #[must_use]
    pub fn with_process_provenance(mut self, provenance: ProcessProvenance) -> Self {
        self.provenance = provenance;
        self
    }

    /// Sets the default wake target.
    #[must_use]
    pub fn with_wake_target(mut self, scope: SessionScope) -> Self {
        self.wake_target = Some(scope);
        self
    }

    /// Sets the execution environment reference.
    #[must_use]
    pub fn with_env_ref(mut self, env_ref: impl Into<String>) -> Self {
        self.env_ref = Some(env_ref.into());
        self
    }

    /// Sets the host profile id of the provenance.
    #[must_use]
    pub fn with_host_profile_id(mut self, host_profile_id: impl Into<String>) -> Self {
        self.provenance.host_profile_id = host_profile_id.into();
        self
    }
}

/// The current state of one registered process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The process id.
    pub id: String,
    /// SHA-256 hex of the canonical JSON of the prepared registration.
    pub registration_hash: String,
    /// What the process runs.
    pub input: ProcessInput,
    /// Declared event types, core types included. Shared: identical
    /// declarations of many processes are one allocation, and committing an
    /// event does not copy them.
    pub event_types: Arc<Vec<ProcessEventType>>,
    /// Where it came from.
    pub provenance: ProcessProvenance,
    /// Execution environment reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_ref: Option<String>,
    /// Default wake target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_target: Option<SessionScope>,
    /// Registration time.
    pub created_at_ms: u64,
    /// Time of the last change.
    pub updated_at_ms: u64,
    /// Where the work lives in another system, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<ProcessExternalRef>,
    /// What the process is waiting for, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitState>,
    /// Running or terminal.
    pub status: ProcessStatus,
}

impl ProcessRecord {
    /// True once a terminal event was committed.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The declared event type named `name`.
    pub fn event_type(&self, name: &str) -> Option<&ProcessEventType> {
        self.event_types.iter().find(|declared| declared.name == name)
    }
}

/// Running, or how the process ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessStatus {
    /// Not terminal yet.
    #[default]
    Running,
    /// Ended successfully.
    Completed {
        /// What `await_process` returns.
        await_output: ProcessAwaitOutput,
    },
    /// Ended in failure.
    Failed {
        /// What `await_process` returns.
        await_output: ProcessAwaitOutput,
    },
    /// Ended by cancellation.
    Cancelled {
        /// What `await_process` returns.
        await_output: ProcessAwaitOutput,
    },
}

impl ProcessStatus {
    /// True for every status but `Running`.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::Running)
    }

    /// The terminal state of a terminal status (`None` for `Running`).
    pub fn terminal_state(&self) -> Option<ProcessTerminalState> {
        match self {
            Self::Running => None,
            Self::Completed { .. } => Some(ProcessTerminalState::Completed),
            Self::Failed { .. } => Some(ProcessTerminalState::Failed),
            Self::Cancelled { .. } => Some(ProcessTerminalState::Cancelled),
        }
    }

    /// The await output of a terminal status.
    pub fn await_output(&self) -> Option<&ProcessAwaitOutput> {
        match self {
            Self::Running => None,
            Self::Completed { await_output } | Self::Failed { await_output } | Self::Cancelled { await_output } => {
                Some(await_output)
            }
        }
    }
}

/// What a process is waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitState {
    /// The kind of wait.
    pub kind: WaitKind,
    /// When the wait began.
    pub since_ms: u64,
}

/// The kinds of wait a process can be in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitKind {
    /// Waiting for the `ordinal`-th signal event.
    Signal {
        /// Signal name.
        name: String,
        /// The event type that carries the signal.
        event_type: String,
        /// The durable wait key.
        key: String,
        /// Which occurrence resolves the wait (see `count_events_through`).
        ordinal: u64,
    },
}

/// Where a process's work lives in another system.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessExternalRef {
    /// The other system (for example a queue name).
    pub backend: String,
    /// The work's id there.
    pub id: String,
    /// Anything else that system returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// How a session presents a granted process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandleDescriptor {
    /// A kind tag (for example `monitor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A human label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// A session's right to address a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessHandleGrant {
    /// The session holding the grant.
    pub session_id: String,
    /// The granted process.
    pub process_id: String,
    /// How the session presents it.
    pub descriptor: ProcessHandleDescriptor,
}

/// A grant with the current record of its process.
pub type ProcessHandleGrantEntry = (ProcessHandleGrant, ProcessRecord);

/// Which processes `list_processes` returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessListFilter {
    /// Only processes running this definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// Only processes in this status.
    #[serde(default)]
    pub status: ProcessStatusFilter,
    /// Only waiting (`Some(true)`) or not waiting (`Some(false)`) processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<bool>,
}

impl ProcessListFilter {
    /// Every process, whatever its status.
    pub fn any() -> Self {
        Self { status: ProcessStatusFilter::Any, ..Self::default() }
    }

    /// True when `record` passes every part of the filter.
    pub fn matches(&self, record: &ProcessRecord) -> bool {
        let status = matches!(
            (&self.status, &record.status),
            (ProcessStatusFilter::Any, _)
                | (ProcessStatusFilter::Running, ProcessStatus::Running)
                | (ProcessStatusFilter::Completed, ProcessStatus::Completed { .. })
                | (ProcessStatusFilter::Failed, ProcessStatus::Failed { .. })
                | (ProcessStatusFilter::Cancelled, ProcessStatus::Cancelled { .. })
        );
        let definition = self.definition.as_deref().is_none_or(|name| record.input.definition_name() == Some(name));
        let waiting = self.waiting.is_none_or(|waiting| record.wait.is_some() == waiting);
        status && definition && waiting
    }
}

/// The status part of a [`ProcessListFilter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStatusFilter {
    /// Non-terminal processes.
    #[default]
    Running,
    /// Completed processes.
    Completed,
    /// Failed processes.
    Failed,
    /// Cancelled processes.
    Cancelled,
    /// Every process.
    Any,
}

/// What `delete_session_process_state` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSessionDeleteReport {
    /// The deleted session.
    pub session_id: String,
    /// Grants removed, over every scope of the session.
    pub revoked_handle_count: usize,
    /// Always 0: wake acks are process-scoped and kept.
    pub deleted_wake_count: usize,
    /// Non-terminal processes that lost a grant and now have none (sorted).
    pub orphaned_process_ids: Vec<String>,
    /// Non-terminal processes that lost a grant but are still granted elsewhere (sorted).
    pub preserved_process_ids: Vec<String>,
}

/// The schema version written into every [`ProcessLease`].
pub const PROCESS_LEASE_SCHEMA_VERSION: u32 = 1;

/// A single-owner, fenced claim over a non-terminal process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLease {
    /// [`PROCESS_LEASE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The leased process.
    pub process_id: String,
    /// The worker holding it.
    pub owner_id: String,
    /// Unguessable token the owner presents to renew or complete.
    pub lease_token: String,
    /// Strictly increasing per process, never reused; writers attach it to
    /// side effects so a stale owner is rejected downstream.
    pub fencing_token: u64,
    /// When the lease was granted.
    pub claimed_at_epoch_ms: u64,
    /// The lease is live while `now < expires_at_epoch_ms`.
    pub expires_at_epoch_ms: u64,
}

/// What a worker presents to release its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLeaseCompletion {
    /// The leased process.
    pub process_id: String,
    /// The token of the lease being released.
    pub lease_token: String,
}

impl ProcessLeaseCompletion {
    /// The completion that releases `lease`.
    pub fn from_lease(lease: &ProcessLease) -> Self {
        Self { process_id: lease.process_id.clone(), lease_token: lease.lease_token.clone() }
    }
}
