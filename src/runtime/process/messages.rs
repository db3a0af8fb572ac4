//! The messages a process actor handles.
//!
//! Every request carries its reply port; replies are `Result`s with the
//! crate's typed error, so a failed call is an answer, not a crash.
//! Events travel as `Arc<ProcessEvent>`: the actor never deep-copies its
//! log to answer a read, the facade clones only what it returns.

use std::sync::Arc;

use crate::error::RegistryError;
use crate::events::{ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessWakeDelivery};
use crate::model::{ProcessExternalRef, ProcessLease, ProcessLeaseCompletion, ProcessRecord, WaitState};
use crate::runtime::call::Reply;
use crate::store::CommitResult;

/// The mailbox permit a parking call holds while its message is queued.
///
/// A parked waiter holds no permit, but the message that parks it must:
/// passivation proves the mailbox empty by taking every permit, and a wait
/// sent without one could sit behind the `Passivate` that stops the actor
/// and be lost with its mailbox, its caller never answered. The actor
/// drops this once the wait is parked (or answered).
pub(crate) type Admission = tokio::sync::OwnedSemaphorePermit;

/// Messages a process actor handles.
#[derive(Debug)]
pub(crate) enum ProcessMsg {
    /// Append one event (steps 2-10 of the spec).
    Append {
        /// The request.
        request: ProcessEventAppendRequest,
        /// Its payload hash, computed by the caller; `None` from a caller
        /// outside the runtime's tasks, which left it to the actor (see
        /// the `input` module).
        payload_hash: Option<String>,
        /// Answer with an event of the answer's own, which no log holds,
        /// so the caller takes it out of its `Arc` without copying: asked
        /// by a caller outside the runtime's tasks that wants an owned
        /// event, so the copy is made on the worker.
        owned_answer: bool,
        /// A fenced append: the lease that must be current.
        fence: Option<Box<ProcessLease>>,
        /// Where the answer goes.
        reply: Reply<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>)>,
    },
    /// Append several events as one change (a batch append).
    AppendBatch {
        /// The requests, each with its payload hash, in order.
        requests: Vec<(ProcessEventAppendRequest, String)>,
        /// Where the answer goes: one event per request.
        reply: Reply<Vec<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>)>>,
    },
    /// Events after a sequence.
    EventsAfter {
        /// The exclusive lower bound.
        after: u64,
        /// Where the answer goes.
        reply: Reply<Vec<Arc<ProcessEvent>>>,
    },
    /// Count of events of a type up to a sequence.
    CountThrough {
        /// The event type.
        event_type: String,
        /// The inclusive upper bound.
        up_to: u64,
        /// Where the answer goes.
        reply: Reply<u64>,
    },
    /// The last events.
    Recent {
        /// How many.
        limit: usize,
        /// Where the answer goes.
        reply: Reply<Vec<Arc<ProcessEvent>>>,
    },
    /// Unacked wake events after a sequence.
    WakeEventsAfter {
        /// The exclusive lower bound.
        after: u64,
        /// Where the answer goes.
        reply: Reply<Vec<Arc<ProcessEvent>>>,
    },
    /// Acknowledge one wake.
    AckWake {
        /// The acked sequence.
        sequence: u64,
        /// Where the answer goes.
        reply: Reply<()>,
    },
    /// The first event of a type after a sequence; parks until it exists.
    WaitEvent {
        /// The event type.
        event_type: String,
        /// The exclusive lower bound.
        after: u64,
        /// The caller's waiter id (for cancellation).
        waiter_id: u64,
        /// The mailbox slot the caller took to send this; released once
        /// the wait is parked (see [`Admission`]).
        admitted: Admission,
        /// Where the answer goes.
        reply: Reply<Arc<ProcessEvent>>,
    },
    /// The await output; parks until the process is terminal.
    AwaitOutput {
        /// The caller's waiter id (for cancellation).
        waiter_id: u64,
        /// The mailbox slot the caller took to send this.
        admitted: Admission,
        /// Where the answer goes.
        reply: Reply<ProcessAwaitOutput>,
    },
    /// The caller of a parked wait gave up.
    CancelWaiter {
        /// Its waiter id.
        waiter_id: u64,
    },
    /// Set (`Some`) or clear (`None`) the wait state.
    SetWait {
        /// The new wait state.
        wait: Option<WaitState>,
        /// A fenced update: the lease that must be current.
        fence: Option<Box<ProcessLease>>,
        /// Where the answer goes.
        reply: Reply<ProcessRecord>,
    },
    /// Set the external reference.
    SetExternalRef {
        /// The reference.
        external_ref: ProcessExternalRef,
        /// Where the answer goes.
        reply: Reply<ProcessRecord>,
    },
    /// Claim the lease.
    ClaimLease {
        /// The claiming worker.
        owner_id: String,
        /// Lease lifetime.
        ttl_ms: u64,
        /// Where the answer goes.
        reply: Reply<ProcessLease>,
    },
    /// Renew the lease.
    RenewLease {
        /// The presented lease.
        lease: ProcessLease,
        /// New lifetime from now.
        ttl_ms: u64,
        /// Where the answer goes.
        reply: Reply<ProcessLease>,
    },
    /// Release the lease.
    CompleteLease {
        /// The presented completion.
        completion: ProcessLeaseCompletion,
        /// Where the answer goes.
        reply: Reply<()>,
    },
    /// Stop if idle for `idle_ms` with nothing parked (state stays in the store).
    Passivate {
        /// How long the actor must have been idle.
        idle_ms: u64,
    },
    /// The store's answer to a commit the actor submitted.
    Committed {
        /// The commit's ticket.
        ticket: u64,
        /// The answer.
        result: CommitResult,
    },
    /// Another node may have changed the process (a notice from a shared
    /// store): check its version and reload when behind, answering the
    /// waiters the reload satisfies.
    Refresh {
        /// Sent by the actor itself, after a refresh that failed while
        /// waiters were parked (see `ProcessActorState::refresh_failed`).
        retried: bool,
    },
    /// Panic inside the handler (tests of supervision only).
    #[cfg(feature = "fault-injection")]
    InjectPanic,
}

impl ProcessMsg {
    /// Answers the call with `error` instead of handling it (the registry
    /// is shutting down). Messages without a caller are dropped.
    pub(crate) fn refuse(self, error: &RegistryError) {
        let error = error.clone();
        match self {
            Self::Append { reply, .. } => drop(reply.send(Err(error))),
            Self::AppendBatch { reply, .. } => drop(reply.send(Err(error))),
            Self::EventsAfter { reply, .. } | Self::Recent { reply, .. } | Self::WakeEventsAfter { reply, .. } => {
                drop(reply.send(Err(error)));
            }
            Self::CountThrough { reply, .. } => drop(reply.send(Err(error))),
            Self::AckWake { reply, .. } | Self::CompleteLease { reply, .. } => drop(reply.send(Err(error))),
            Self::WaitEvent { reply, .. } => drop(reply.send(Err(error))),
            Self::AwaitOutput { reply, .. } => drop(reply.send(Err(error))),
            Self::SetWait { reply, .. } | Self::SetExternalRef { reply, .. } => drop(reply.send(Err(error))),
            Self::ClaimLease { reply, .. } | Self::RenewLease { reply, .. } => drop(reply.send(Err(error))),
            Self::CancelWaiter { .. } | Self::Passivate { .. } | Self::Committed { .. } | Self::Refresh { .. } => {}
            #[cfg(feature = "fault-injection")]
            Self::InjectPanic => {}
        }
    }

    /// Whether, with a shared store, the call may be planned on the cached
    /// state without checking the store's version first: a mutation whose
    /// every answer is either a commit (fenced by the version, so a stale
    /// plan commits nothing and is planned again) or a refusal that stays
    /// true as the process moves on (a terminal process stays terminal, a
    /// replay key stays taken, a schema stays what it was). Fenced writes
    /// and leases are not: they are decided on the server's clock.
    pub(crate) fn plans_optimistically(&self) -> bool {
        matches!(
            self,
            Self::Append { fence: None, .. }
                | Self::AppendBatch { .. }
                | Self::SetWait { fence: None, .. }
                | Self::SetExternalRef { .. }
        )
    }

    /// Whether the answer depends on the process's state, so that with a
    /// shared store the actor checks the store's version first.
    pub(crate) fn reads_state(&self) -> bool {
        !matches!(self, Self::CancelWaiter { .. } | Self::Passivate { .. } | Self::Committed { .. })
    }
}
