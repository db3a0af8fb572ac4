//! The one error type every registry call returns.
//!
//! Each variant is a failure a caller may want to match on; each message
//! names the process it is about. The trait calls it [`PluginError`], which
//! is an alias of [`RegistryError`].

use thiserror::Error;

/// Every failure a [`ProcessRegistry`](crate::ProcessRegistry) call can report.
///
/// Errors are values, not panics: a call that returns one has changed nothing
/// and leaves the process usable.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No process with this id is registered.
    #[error("unknown process `{process_id}`")]
    UnknownProcess {
        /// The id that was asked for.
        process_id: String,
    },
    /// The id is registered with a different registration.
    #[error("process `{process_id}` is already registered with a different registration (hash {existing_hash}, requested {requested_hash})")]
    RegistrationConflict {
        /// The id both registrations use.
        process_id: String,
        /// Hash of the registration already stored.
        existing_hash: String,
        /// Hash of the rejected registration.
        requested_hash: String,
    },
    /// The registration breaks a validation rule.
    #[error("invalid registration for process `{process_id}`: {reason}")]
    InvalidRegistration {
        /// The id of the rejected registration (may be empty when that is the fault).
        process_id: String,
        /// Which rule was broken.
        reason: String,
    },
    /// The event type is not declared on the process.
    #[error("process `{process_id}` does not declare event type `{event_type}`")]
    UndeclaredEventType {
        /// The process appended to.
        process_id: String,
        /// The undeclared type.
        event_type: String,
    },
    /// The payload does not satisfy the event type's schema, or a selector
    /// did not find what it points at.
    #[error("invalid payload for `{event_type}` on process `{process_id}` at `{path}`: {message}")]
    InvalidPayload {
        /// The process appended to.
        process_id: String,
        /// The event type of the rejected payload.
        event_type: String,
        /// JSON pointer of the failing location in the payload (`""` is the root).
        path: String,
        /// What was wrong there.
        message: String,
    },
    /// The event type requires a non-empty replay key and none was given.
    #[error("process `{process_id}` event `{event_type}` requires a non-empty replay key")]
    MissingReplayKey {
        /// The process appended to.
        process_id: String,
        /// The event type that requires a key.
        event_type: String,
    },
    /// The replay key was already used on this process for another payload.
    #[error("replay key `{replay_key}` on process `{process_id}` was already used for a different event")]
    ReplayConflict {
        /// The process appended to.
        process_id: String,
        /// The reused key.
        replay_key: String,
    },
    /// The process already reached a terminal status.
    #[error("process `{process_id}` is already terminal")]
    AlreadyTerminal {
        /// The terminal process.
        process_id: String,
    },
    /// A sequence number names no event of the process.
    #[error("process `{process_id}` has no event with sequence {sequence} (last is {last_sequence})")]
    SequenceOutOfRange {
        /// The process asked about.
        process_id: String,
        /// The sequence that was asked for.
        sequence: u64,
        /// The last sequence of the log (0 when empty).
        last_sequence: u64,
    },
    /// Another owner holds an unexpired lease.
    #[error("process `{process_id}` is already leased by {owner_id} until {expires_at_epoch_ms}")]
    LeaseHeld {
        /// The leased process.
        process_id: String,
        /// The current owner.
        owner_id: String,
        /// When the current lease expires (epoch ms).
        expires_at_epoch_ms: u64,
    },
    /// The presented lease is not the current one, or it expired.
    #[error("lease on process `{process_id}` is missing or expired")]
    LeaseMissingOrExpired {
        /// The process the lease was for.
        process_id: String,
    },
    /// A fenced write presented a lease that is not the process's current,
    /// unexpired lease (another worker took the process over, the lease
    /// expired or was released): the write did not happen. A worker that
    /// gets this has lost the process and must stop working on it.
    #[error("fenced write on process `{process_id}` refused: presented fencing token {presented_fencing_token}, current {}", current_fencing_token.map_or_else(|| "none (no live lease)".to_owned(), |token| token.to_string()))]
    LeaseFenced {
        /// The process written to.
        process_id: String,
        /// The fencing token of the lease the writer presented.
        presented_fencing_token: u64,
        /// The fencing token of the process's current live lease, `None`
        /// when no lease is live (released or expired).
        current_fencing_token: Option<u64>,
    },
    /// The scope holds no grant for the process.
    #[error("process `{process_id}` is not granted to scope `{scope_id}`")]
    HandleNotGranted {
        /// The process that is not granted.
        process_id: String,
        /// The scope that lacks the grant.
        scope_id: String,
    },
    /// A session scope or session id that could be mistaken for another:
    /// the session id is empty, or the session or frame id contains the
    /// separator `/frame:` (so session `a/frame:b` and session `a` with
    /// frame `b` would share the scope id `session:a/frame:b`).
    #[error("invalid session scope of session `{session_id}` for process `{process_id}`: {reason}")]
    InvalidScope {
        /// The process the call was about (empty for calls about no process).
        process_id: String,
        /// The refused session id (its first bytes when it is long).
        session_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An id or key contains a NUL character, which no store can keep as
    /// text (PostgreSQL's `TEXT` refuses it), so it is refused on every
    /// store alike: a process that registers on one registers on all.
    #[error("{what} for process `{process_id}` contains a NUL character")]
    ContainsNul {
        /// The process the call was about.
        process_id: String,
        /// Which input (process id, event type, replay key, session id, ...).
        what: String,
    },
    /// An input exceeds a configured size limit.
    #[error("{what} for process `{process_id}` exceeds the limit of {limit}")]
    LimitExceeded {
        /// The process the call was about.
        process_id: String,
        /// What was too large (payload bytes, id length, nesting depth, ...).
        what: String,
        /// The configured limit.
        limit: u64,
    },
    /// The registry was shut down; the call did not run (or its answer was lost).
    #[error("the process registry is stopped (process `{process_id}`)")]
    Stopped {
        /// The process the call was about (empty for registry-wide calls).
        process_id: String,
    },
    /// The process actor crashed while this call was in flight; the call's
    /// change was not committed and may be retried.
    #[error("process `{process_id}` restarted while the call was in flight; nothing was committed")]
    ProcessRestarted {
        /// The restarted process.
        process_id: String,
    },
    /// The process actor crashed more often than the restart intensity
    /// allows; the process is quarantined: it refuses mutations and waits
    /// (reads of its committed state still answer) until an operator calls
    /// [`ActorProcessRegistry::release_quarantine`](crate::ActorProcessRegistry::release_quarantine).
    #[error("process `{process_id}` is quarantined after repeated crashes")]
    Quarantined {
        /// The quarantined process.
        process_id: String,
    },
    /// [`ActorProcessRegistry::release_quarantine`](crate::ActorProcessRegistry::release_quarantine)
    /// named a process that is not quarantined (never was, or was released
    /// already): nothing changed.
    #[error("process `{process_id}` is not quarantined")]
    NotQuarantined {
        /// The process named.
        process_id: String,
    },
    /// The process has as many calls in flight as its mailbox bound allows
    /// and the registry is configured to refuse, not wait.
    #[error("process `{process_id}` is overloaded ({capacity} calls in flight)")]
    Overloaded {
        /// The overloaded process.
        process_id: String,
        /// The configured bound.
        capacity: usize,
    },
    /// The store file is held by another registry: two writers would fork
    /// its fencing tokens. Read-only inspectors may still open it.
    #[error("store `{path}` is held by another registry")]
    StoreLocked {
        /// The store's path.
        path: String,
    },
    /// The store was written with a schema version this build does not
    /// read; the file was not touched.
    #[error("store `{path}` has schema version {found}; this build reads version {supported}")]
    StoreVersion {
        /// The store's path.
        path: String,
        /// The version found in the file.
        found: i64,
        /// The version this build reads and writes.
        supported: i64,
    },
    /// The store could not be opened: not a database, truncated,
    /// unreadable, or not writable.
    #[error("cannot open store `{path}`: {message}")]
    StoreOpen {
        /// The store's path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// [`ActorProcessRegistry::start`](crate::ActorProcessRegistry::start)
    /// was given a configuration it cannot run safely (see
    /// [`RegistryConfig`](crate::RegistryConfig) for the bounds).
    #[error("invalid registry configuration: {reason}")]
    InvalidConfig {
        /// Which setting is out of bounds, and why.
        reason: String,
    },
    /// Another registry node sharing the store (PostgreSQL) committed a
    /// change to the same process (or to the grants) between this node's
    /// read and its commit, so nothing was committed. The registry plans
    /// the call again on the fresh state by itself; callers see this only
    /// when the call lost that race many times in a row, and may retry.
    #[error("process `{process_id}` was changed by another node {attempts} times while this call was planned; nothing was committed")]
    Contended {
        /// The process (empty for the grant index).
        process_id: String,
        /// How many times the call was planned.
        attempts: u32,
    },
    /// The store failed to record a change; nothing was committed.
    #[error("storage failure for process `{process_id}`: {message}")]
    Storage {
        /// The process whose change failed (empty for registry-wide changes).
        process_id: String,
        /// What the store reported.
        message: String,
    },
}

/// The error type of the [`ProcessRegistry`](crate::ProcessRegistry) trait.
pub type PluginError = RegistryError;

impl RegistryError {
    /// The process id the error is about, when it names one (empty when
    /// it names none).
    pub fn process_id(&self) -> &str {
        match self {
            Self::InvalidConfig { .. } => "",
            Self::UnknownProcess { process_id }
            | Self::RegistrationConflict { process_id, .. }
            | Self::InvalidRegistration { process_id, .. }
            | Self::UndeclaredEventType { process_id, .. }
            | Self::InvalidPayload { process_id, .. }
            | Self::MissingReplayKey { process_id, .. }
            | Self::ReplayConflict { process_id, .. }
            | Self::AlreadyTerminal { process_id }
            | Self::SequenceOutOfRange { process_id, .. }
            | Self::LeaseHeld { process_id, .. }
            | Self::LeaseMissingOrExpired { process_id }
            | Self::LeaseFenced { process_id, .. }
            | Self::HandleNotGranted { process_id, .. }
            | Self::InvalidScope { process_id, .. }
            | Self::LimitExceeded { process_id, .. }
            | Self::ContainsNul { process_id, .. }
            | Self::Stopped { process_id }
            | Self::ProcessRestarted { process_id }
            | Self::Quarantined { process_id }
            | Self::NotQuarantined { process_id }
            | Self::Overloaded { process_id, .. }
            | Self::Contended { process_id, .. }
            | Self::Storage { process_id, .. } => process_id,
            Self::StoreLocked { .. } | Self::StoreVersion { .. } | Self::StoreOpen { .. } => "",
        }
    }

    /// An unknown id may be caller garbage of any size: the error keeps its
    /// first bytes only.
    pub(crate) fn unknown(process_id: &str) -> Self {
        Self::UnknownProcess { process_id: crate::rules::limits::truncated(process_id) }
    }

    pub(crate) fn stopped(process_id: &str) -> Self {
        Self::Stopped { process_id: crate::rules::limits::truncated(process_id) }
    }
}
