//! One claimed process, from claim to release: the handler's runs in their
//! own task, the renewals beside them, the fenced completion, the release.
//!
//! A run task owns everything of its process: the lease, the handler's
//! task (aborted when the run task drops it) and the renewal task (the
//! same). It ends in one of four ways, each counted: completed (the
//! handler's outcome, or a `Failure` after its last attempt), lost (a
//! renewal or the fenced completion was refused: another worker owns the
//! process now), abandoned (the worker shut down past its deadline, or the
//! registry stopped or its store failed; the lease is released so another
//! worker can take the process at once, when the registry can still take
//! the release; otherwise it expires after its ttl) or quarantined. Only a
//! crash (the worker dropped) skips the release: the lease then expires
//! after its ttl, as if the OS process had died.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{AbortHandle, JoinError};
use tokio_util::sync::CancellationToken;

use super::context::ProcessContext;
use super::stats::bump;
use super::{Handler, Registered, WorkerShared};
use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::model::{ProcessLease, ProcessLeaseCompletion, ProcessRecord};
use crate::rules::limits::truncated;

/// The failure code of a process whose handler's outcome the registry
/// refused to store (too large or too deep): see `complete`.
pub(crate) const COMPLETION_REFUSED: &str = "completion_refused";

/// Aborts a task when dropped, so a run task that ends (or is dropped with
/// the worker) never leaves its handler or renewals running.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a run stopped before an outcome to complete with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// The lease was lost.
    Lost,
    /// Given back: the worker is shutting down past its deadline, or the
    /// registry stopped or its store failed.
    Abandoned,
    /// The registry quarantined the process.
    Quarantined,
}

/// How the handler's runs ended.
enum Ended {
    /// An outcome to complete the process with; `failed` when it is the
    /// failure after the last attempt.
    Outcome {
        output: ProcessAwaitOutput,
        failed: bool,
    },
    Stopped(Stopped),
}

/// Runs the process `record` under `lease` to its end, then gives back the
/// lease (unless the worker crashed) and the concurrency permit.
pub(super) async fn run_process(
    shared: Arc<WorkerShared>,
    registered: Arc<Registered>,
    record: ProcessRecord,
    lease: ProcessLease,
    permit: OwnedSemaphorePermit,
) {
    let process_id = record.id.clone();
    // The worker was dropped: stop where we are, release nothing.
    tokio::select! {
        biased;
        () = shared.crashed.cancelled() => {}
        () = supervise(&shared, &registered, record, &lease) => {
            let completion = ProcessLeaseCompletion::from_lease(&lease);
            if let Err(error) = shared.registry.complete_process_lease(&completion).await {
                tracing::debug!(%process_id, %error, "releasing the lease failed; it expires after its ttl");
            }
        }
    }
    shared.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&process_id);
    shared.counters.running.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

/// The handler's runs with renewals beside them, then the completion.
async fn supervise(shared: &Arc<WorkerShared>, registered: &Registered, record: ProcessRecord, lease: &ProcessLease) {
    let cancel = shared.hard_stop.child_token();
    // Why a refused renewal cancelled the run, set by the renewal task.
    let refused = Arc::new(OnceLock::new());
    let renewals = tokio::spawn(renew(Arc::clone(shared), lease.clone(), cancel.clone(), Arc::clone(&refused)));
    let _renewals = AbortOnDrop(renewals.abort_handle());
    let ended = attempts(shared, registered, record, lease, &cancel).await;
    // A quarantine, wherever it was heard, wins: the process is then
    // listed in `WorkerStats::quarantined`.
    let stopped = |reason| match (refused.get(), reason) {
        (Some(Stopped::Quarantined), _) | (_, Stopped::Quarantined) => Stopped::Quarantined,
        _ if shared.hard_stop.is_cancelled() => Stopped::Abandoned,
        (Some(&refused), _) => refused,
        (None, reason) => reason,
    };
    let ended = match ended {
        Ended::Stopped(reason) => Ended::Stopped(stopped(reason)),
        outcome => outcome,
    };
    let counters = &shared.counters;
    match ended {
        Ended::Outcome { output, failed } => match complete(shared, lease, output, failed).await {
            Ok(failed) => bump(if failed { &counters.failed } else { &counters.completed }),
            Err(RegistryError::Quarantined { .. }) => counters.quarantine(&lease.process_id),
            Err(RegistryError::Stopped { .. } | RegistryError::Storage { .. }) => bump(&counters.abandoned),
            Err(error) => {
                tracing::info!(process_id = %lease.process_id, %error, "fenced completion refused: the process was taken over");
                bump(&counters.lost);
            }
        },
        Ended::Stopped(Stopped::Lost) => bump(&counters.lost),
        Ended::Stopped(Stopped::Abandoned) => bump(&counters.abandoned),
        Ended::Stopped(Stopped::Quarantined) => counters.quarantine(&lease.process_id),
    }
}

/// The fenced completion of `lease`'s process with `output` (`failed`:
/// whether that output fails it); answers whether the process ended
/// failed.
///
/// - A fenced write whose answer the process's crash lost reports
///   `ProcessRestarted` (it is never sent again on its own: the lease may
///   have moved on since it committed). The completion carries a replay
///   key, so sending it again here answers with the committed terminal
///   event while the lease still holds, and `LeaseFenced` once it does not.
/// - `Overloaded` (a registry that refuses when full) is tried again too
///   ([`transient_retried`]): the handler's work is done and should not be
///   lost.
/// - An output the registry refuses as input (`LimitExceeded`: too large
///   or too deep, as a long error or panic message can make it;
///   `InvalidPayload`) can never be stored. Released, the process would be
///   claimed and run again at every sweep, for ever; it is failed instead
///   with [`COMPLETION_REFUSED`] and the refusal's first bytes.
///
/// A few tries each: a process that keeps crashing is quarantined, which
/// answers `Quarantined`.
async fn complete(
    shared: &WorkerShared,
    lease: &ProcessLease,
    output: ProcessAwaitOutput,
    failed: bool,
) -> Result<bool, RegistryError> {
    let completed = |output: ProcessAwaitOutput| {
        transient_retried(move || shared.registry.complete_process_fenced(lease, output.clone()))
    };
    match completed(output).await {
        Ok(_) => Ok(failed),
        Err(error @ (RegistryError::LimitExceeded { .. } | RegistryError::InvalidPayload { .. })) => {
            tracing::warn!(process_id = %lease.process_id, %error, "the handler's outcome was refused; failing the process");
            let refused = ProcessAwaitOutput::failure(COMPLETION_REFUSED, truncated(&error.to_string()));
            completed(refused).await.map(|_| true)
        }
        Err(error) => Err(error),
    }
}

/// Runs the handler up to its policy's attempts, each run in its own task.
async fn attempts(
    shared: &WorkerShared,
    registered: &Registered,
    record: ProcessRecord,
    lease: &ProcessLease,
    cancel: &CancellationToken,
) -> Ended {
    let policy = registered.policy;
    let counters = &shared.counters;
    let mut last_failure = None;
    for attempt in 1..=policy.max_attempts {
        if attempt > 1 {
            tokio::select! {
                () = cancel.cancelled() => return Ended::Stopped(Stopped::Lost),
                () = tokio::time::sleep(policy.backoff(attempt - 1)) => {}
            }
            // Still ours? A handler that failed because its lease was lost
            // is not worth another run. A full mailbox or a crash that lost
            // the answer says nothing about the lease: asked again, so a
            // busy registry does not end the claim (whose next one would
            // start again at attempt 1).
            let ttl_ms = shared.config.lease_ttl_ms();
            if let Err(error) = transient_retried(|| shared.registry.renew_process_lease(lease, ttl_ms)).await {
                return Ended::Stopped(stopped_by(&error));
            }
            bump(&counters.retries);
        }
        // A busy registry (or a crash that lost the answer) says nothing
        // about the lease either: the log is asked for again.
        // The attempt's own token: it fires with the run's, and when the
        // attempt ends, so a context clone that outlived its handler (in a
        // task the handler spawned) learns that its run is over.
        let this_attempt = cancel.child_token();
        let ended = this_attempt.clone().drop_guard();
        let loaded = transient_retried(|| {
            let token = this_attempt.clone();
            ProcessContext::load(Arc::clone(&shared.registry), record.clone(), lease.clone(), attempt, token)
        });
        let context = match loaded.await {
            Ok(context) => context,
            Err(error) => return Ended::Stopped(stopped_by(&error)),
        };
        bump(&counters.runs);
        let ran = run_once(shared, &registered.handler, context, cancel).await;
        drop(ended);
        let failure = match ran {
            Ok(Ok(output)) => return Ended::Outcome { output, failed: false },
            Ok(Err(message)) => {
                bump(&counters.handler_errors);
                ProcessAwaitOutput::failure("handler_error", message)
            }
            Err(Some(panic)) => {
                bump(&counters.handler_panics);
                ProcessAwaitOutput::failure("handler_panicked", panic)
            }
            Err(None) => return Ended::Stopped(Stopped::Lost),
        };
        last_failure = Some(failure);
        if cancel.is_cancelled() {
            return Ended::Stopped(Stopped::Lost);
        }
    }
    match last_failure {
        Some(output) => Ended::Outcome { output, failed: true },
        None => Ended::Stopped(Stopped::Lost),
    }
}

/// One run of the handler in its own task (the call that makes its future
/// included). `Err(Some(message))` is a panic; `Err(None)` a run stopped
/// by `cancel`: after the grace period (none when the worker is shutting
/// down past its deadline) its task is aborted, which drops the handler's
/// future.
async fn run_once(
    shared: &WorkerShared,
    handler: &Handler,
    context: ProcessContext,
    cancel: &CancellationToken,
) -> Result<Result<ProcessAwaitOutput, String>, Option<String>> {
    // The handler is called inside its task, not here: a handler function
    // that panics before returning its future is then caught like any
    // other handler panic instead of unwinding through the run task.
    let handler = Arc::clone(handler);
    let mut task = tokio::spawn(async move { handler(context).await });
    let _abort = AbortOnDrop(task.abort_handle());
    let joined = tokio::select! {
        // A handler that has finished is taken at its word, even if the
        // cancellation fired at the same moment: its outcome is complete.
        biased;
        joined = &mut task => joined,
        () = cancel.cancelled() => {
            if shared.hard_stop.is_cancelled() {
                return Err(None);
            }
            tokio::select! {
                joined = &mut task => joined,
                () = tokio::time::sleep(shared.config.cancel_grace) => return Err(None),
                () = shared.hard_stop.cancelled() => return Err(None),
            }
        }
    };
    joined.map_err(panic_message)
}

/// The message of a panicked handler task (`None` for a cancelled one).
fn panic_message(error: JoinError) -> Option<String> {
    let payload: Box<dyn Any + Send> = error.try_into_panic().ok()?;
    let message = match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => {
            payload.downcast_ref::<&str>().map_or("a panic without a message", |message| message).to_owned()
        }
    };
    Some(message)
}

/// `call`, asked again after a short pause (20, then 40 ms) while it
/// answers `Overloaded` (a full mailbox under `OverloadPolicy::Reject`) or
/// `ProcessRestarted` (a crash lost the answer): both pass. Three tries.
async fn transient_retried<T, F, Fut>(mut call: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RegistryError>>,
{
    const TRIES: u32 = 3;
    let mut tries = 1;
    loop {
        match call().await {
            Err(RegistryError::Overloaded { .. } | RegistryError::ProcessRestarted { .. }) if tries < TRIES => {
                tokio::time::sleep(std::time::Duration::from_millis(10 << tries)).await;
                tries += 1;
            }
            answered => return answered,
        }
    }
}

/// Why a registry refusal stops a run. As for a refused completion, a
/// registry that stopped or whose store failed did not give the process
/// to anyone else, so the run is given back (abandoned), not lost.
fn stopped_by(error: &RegistryError) -> Stopped {
    match error {
        RegistryError::Quarantined { .. } => Stopped::Quarantined,
        RegistryError::Stopped { .. } | RegistryError::Storage { .. } => Stopped::Abandoned,
        _ => Stopped::Lost,
    }
}

/// Renews `lease` every renewal interval until the run ends (the task is
/// aborted). A refused renewal records why in `refused`, then cancels the
/// run; an overloaded or restarting process is tried again at the next
/// tick.
async fn renew(
    shared: Arc<WorkerShared>,
    lease: ProcessLease,
    cancel: CancellationToken,
    refused: Arc<OnceLock<Stopped>>,
) {
    let every = shared.config.effective_renew_interval();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match shared.registry.renew_process_lease(&lease, shared.config.lease_ttl_ms()).await {
            Ok(_) => bump(&shared.counters.renewals),
            Err(RegistryError::Overloaded { .. } | RegistryError::ProcessRestarted { .. }) => {}
            Err(error) => {
                tracing::info!(process_id = %lease.process_id, %error, "lease renewal refused; cancelling the handler");
                let _ = refused.set(stopped_by(&error));
                cancel.cancel();
                return;
            }
        }
    }
}
