//! The messages the registry supervisor handles: creation, activation,
//! the passivation sweep, and everything about session grants.

use std::sync::Arc;

use ractor::ActorId;

use crate::model::{
    ProcessHandleDescriptor, ProcessHandleGrant, ProcessRecord, ProcessSessionDeleteReport, SessionScope,
};
use crate::rules::registration::PreparedRegistration;
use crate::runtime::call::Reply;
use crate::runtime::routes::ActiveProcess;
use crate::store::CommitResult;

/// Messages the supervisor handles.
#[derive(Debug)]
pub(crate) enum SupervisorMsg {
    /// Create the process unless its id exists (then compare hashes).
    Register {
        /// The prepared registration.
        prepared: Box<PreparedRegistration>,
        /// Where the answer goes.
        reply: Reply<ProcessRecord>,
    },
    /// The store's answer to a registration the supervisor submitted.
    Registered {
        /// The record written.
        record: Arc<ProcessRecord>,
        /// The answer.
        result: CommitResult,
    },
    /// Start an actor for a passive process (no-op when one runs).
    Activate {
        /// The process.
        process_id: String,
        /// Where the answer goes.
        reply: Reply<Arc<ActiveProcess>>,
    },
    /// The actor that replaces `gone`, which stopped answering; answered
    /// once the supervisor has handled `gone`'s end (restarted the process,
    /// quarantined it, or seen it passivate).
    Replace {
        /// The process.
        process_id: String,
        /// The actor that went away.
        gone: ActorId,
        /// Where the answer goes.
        reply: Reply<Arc<ActiveProcess>>,
    },
    /// Ask every active actor idle for the configured time to passivate.
    Sweep,
    /// Grant a handle.
    Grant {
        /// The scope.
        scope: SessionScope,
        /// The process.
        process_id: String,
        /// The descriptor.
        descriptor: ProcessHandleDescriptor,
        /// Where the answer goes.
        reply: Reply<ProcessHandleGrant>,
    },
    /// Revoke a handle.
    Revoke {
        /// The scope.
        scope: SessionScope,
        /// The process.
        process_id: String,
        /// Where the answer goes.
        reply: Reply<()>,
    },
    /// Move grants between scopes, all or nothing.
    Transfer {
        /// From this scope.
        from: SessionScope,
        /// To this scope.
        to: SessionScope,
        /// These processes.
        process_ids: Vec<String>,
        /// Where the answer goes.
        reply: Reply<()>,
    },
    /// A scope's grants.
    ListGrants {
        /// The scope.
        scope: SessionScope,
        /// Where the answer goes.
        reply: Reply<Vec<ProcessHandleGrant>>,
    },
    /// Whether a scope holds a grant.
    HasGrant {
        /// The scope.
        scope: SessionScope,
        /// The process.
        process_id: String,
        /// Where the answer goes.
        reply: Reply<bool>,
    },
    /// A process's grants.
    GrantsOfProcess {
        /// The process.
        process_id: String,
        /// Where the answer goes.
        reply: Reply<Vec<ProcessHandleGrant>>,
    },
    /// Lift a quarantine: the process goes back to passive.
    ReleaseQuarantine {
        /// The process.
        process_id: String,
        /// Where the answer goes.
        reply: Reply<()>,
    },
    /// Remove every grant of a session.
    DeleteSession {
        /// The session.
        session_id: String,
        /// Where the answer goes.
        reply: Reply<ProcessSessionDeleteReport>,
    },
}
