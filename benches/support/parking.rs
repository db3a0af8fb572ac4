//! Timing a parked caller: from the commit that answers a parked
//! `wait_event_after` or `await_process` to the waiter running again.
//!
//! [`wake_once`] and [`await_once`] make sure the waiter really parked
//! before the timed commit, so a figure never measures a call that was
//! answered on its first poll.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use process_registry::{ActorProcessRegistry, ProcessAwaitOutput, RegistryError};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::subject::Subject;
use super::workload::{signal, SIGNAL};

/// Polls a parking call once. An answer on the first poll means the figure
/// would not measure a parked caller: an error. For the baseline, one poll
/// is enough to be parked: the call took the (fair, uncontended) lock,
/// found nothing and registered on the process's `Notify` before returning
/// `Pending`. For the actor it is not (the call may first have to activate
/// the process's actor): see [`until_parked`].
async fn poll_once<F: Future>(future: Pin<&mut F>) -> Result<(), String> {
    let mut future = Some(future);
    match poll_fn(|cx| Poll::Ready(future.take().map(|f| f.poll(cx).is_ready()))).await {
        Some(false) => Ok(()),
        _ => Err("the waiter was answered before it parked".to_owned()),
    }
}

/// For the actor registry: waits until its count of parked callers exceeds
/// `before`, i.e. the waiter's message reached the process actor and parked.
async fn until_parked(actor: Option<&ActorProcessRegistry>, before: u64) -> Result<(), String> {
    let Some(actor) = actor else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while actor.stats().parked_waiters <= before {
        if Instant::now() > deadline {
            return Err("the waiter did not park within 10 s".to_owned());
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

fn parked_now(actor: Option<&ActorProcessRegistry>) -> u64 {
    actor.map_or(0, |actor| actor.stats().parked_waiters)
}

/// The waiter's own result, or why its task ended without one.
async fn join_waiter<T>(waiter: JoinHandle<Result<T, String>>) -> Result<T, String> {
    waiter.await.map_err(|err| format!("the waiter task: {err}"))?
}

/// Spawns a task that makes the parking call `wait` (named `what` in
/// errors) and returns once that call is parked. The task yields the
/// call's answer and the instant it ran again.
async fn spawn_parked<T, W>(
    actor: Option<&ActorProcessRegistry>,
    what: &'static str,
    wait: W,
) -> Result<JoinHandle<Result<(T, Instant), String>>, String>
where
    T: Send + 'static,
    W: Future<Output = Result<T, RegistryError>> + Send + 'static,
{
    let before = parked_now(actor);
    let (parked_tx, parked_rx) = oneshot::channel();
    let waiter = tokio::spawn(async move {
        let mut wait = pin!(wait);
        poll_once(wait.as_mut()).await?;
        let _ = parked_tx.send(());
        let answer = wait.await.map_err(|err| format!("{what}: {err}"))?;
        Ok((answer, Instant::now()))
    });
    // If the waiter failed before parking, its error is the one to report.
    if parked_rx.await.is_err() {
        join_waiter(waiter).await?;
        return Err("the waiter ended without parking".to_owned());
    }
    until_parked(actor, before).await?;
    Ok(waiter)
}

/// One wake: a spawned task parks in `wait_event_after(SIGNAL, after)`,
/// then this task appends the signal. The time from just before the append
/// to the waiter running again.
pub async fn wake_once(subject: &Subject, process_id: &str, after: u64) -> Result<Duration, String> {
    wake_after_idle(subject, process_id, after, None).await
}

/// [`wake_once`], with the runtime left idle for `idle` between the
/// waiter parking and the append (every worker thread goes to sleep, so
/// the append and the wake start from parked threads).
pub async fn wake_after_idle(
    subject: &Subject,
    process_id: &str,
    after: u64,
    idle: Option<Duration>,
) -> Result<Duration, String> {
    let (registry, process) = (Arc::clone(&subject.registry), process_id.to_owned());
    let wait = async move { registry.wait_event_after(&process, SIGNAL, after).await };
    let waiter = spawn_parked(subject.actor.as_ref(), "wait_event_after", wait).await?;
    if let Some(idle) = idle {
        tokio::time::sleep(idle).await;
    }
    let start = Instant::now();
    subject
        .registry
        .append_event(process_id, signal(after + 1))
        .await
        .map_err(|err| format!("append signal: {err}"))?;
    let (event, woke) = join_waiter(waiter).await?;
    if event.sequence != after + 1 {
        return Err(format!("woken by sequence {}, expected {}", event.sequence, after + 1));
    }
    Ok(woke.saturating_duration_since(start))
}

/// One await: a spawned task parks in `await_process`, then this task
/// completes the process. The time from just before `complete_process` to
/// the waiter running again.
pub async fn await_once(subject: &Subject, process_id: &str) -> Result<Duration, String> {
    let (registry, process) = (Arc::clone(&subject.registry), process_id.to_owned());
    let wait = async move { registry.await_process(&process).await };
    let waiter = spawn_parked(subject.actor.as_ref(), "await_process", wait).await?;
    let start = Instant::now();
    subject
        .registry
        .complete_process(process_id, ProcessAwaitOutput::success(json!({ "ok": true })))
        .await
        .map_err(|err| format!("complete_process: {err}"))?;
    let (_, woke) = join_waiter(waiter).await?;
    Ok(woke.saturating_duration_since(start))
}
