//! Batch appends: many events to one process as one change.
//!
//! [`BatchProcessRegistry::append_events`] plans its requests in order, each
//! on the log as the requests before it left it, and commits every new
//! event at once or none of them: a refusal of any request (an undeclared
//! type, an invalid payload, a second terminal event, a replay key reused
//! for another payload) refuses the batch and changes nothing. Replay keys
//! are honoured per request, against the log and against the batch's
//! earlier requests. Waiters and wakes are answered as for single appends,
//! in sequence order, once the batch is committed. With the durable stores
//! a batch is one commit: one fsync (SQLite), one round trip (PostgreSQL).

use crate::events::{ProcessEventAppendRequest, ProcessEventAppendResult};
use crate::registry::ProcessRegistry;
use crate::PluginError;

/// Batch appends, beyond the specified trait; implemented by
/// [`ActorProcessRegistry`](crate::ActorProcessRegistry) on every store and
/// by the baseline.
#[async_trait::async_trait]
pub trait BatchProcessRegistry: ProcessRegistry {
    /// Appends `requests` to `process_id`, in order, as one change; answers
    /// one result per request, in order (a replayed request answers with the
    /// event it names, as [`ProcessRegistry::append_event`] does). An empty
    /// batch answers an empty list and commits nothing; on an unknown
    /// process it is `UnknownProcess`, as every call naming one is.
    ///
    /// Waits on: the process (one message to its actor; with a durable
    /// store, one commit). Cost: O(requests + their payloads) planning,
    /// like that many `append_event`s without their messages and commits.
    /// Errors: those of `append_event` for the first refused request (no
    /// event of the batch is committed), `LimitExceeded` for more than
    /// [`Limits::max_batch_events`](crate::Limits::max_batch_events)
    /// requests or payloads adding up to more than
    /// [`Limits::max_batch_bytes`](crate::Limits::max_batch_bytes).
    /// Cancel safety: a dropped future leaves the batch either
    /// wholly committed or not at all; with replay keys on every request,
    /// repeat it.
    async fn append_events(
        &self,
        process_id: &str,
        requests: Vec<ProcessEventAppendRequest>,
    ) -> Result<Vec<ProcessEventAppendResult>, PluginError>;
}
