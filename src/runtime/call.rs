//! The calling machinery: how one trait call reaches an actor and comes back.
//!
//! Each call looks its process up in the routing table, activates it through
//! the supervisor when it is passive, takes a mailbox permit (waiting or
//! refusing per the overload policy), sends one message with a reply port,
//! and awaits the reply. Parking calls (`wait_event_after`,
//! `await_process`) hold a permit only until the actor has parked them,
//! and carry a guard that tells the actor when their future is dropped.
//!
//! When a process actor dies under a call, the reply port closes: the
//! message may have been handled (and its change committed) or not. The
//! [`Retry`] policy of each message decides what follows; during shutdown
//! every call gets [`RegistryError::Stopped`] instead. A message the dead
//! actor refused was never seen, so it is re-sent whatever its policy.
//!
//! On the memory store the four reads in the first row send no message at
//! all: they are answered in the caller's task from the store's committed
//! state ([`ActorProcessRegistry::read`]). The table is their policy on
//! the durable stores.
//!
//! | call (message) | policy | why |
//! |---|---|---|
//! | `events_after`, `count_events_through`, `recent_events`, `wake_events_after` (`EventsAfter`, `CountThrough`, `Recent`, `WakeEventsAfter`) | `Transparent` | reads of committed state: any actor gives the same answer |
//! | `wait_event_after`, `await_process` (`WaitEvent`, `AwaitOutput`) | re-parked (see [`ActorProcessRegistry::park`]) | a wait commits nothing; it parks again on the new actor |
//! | `ack_wake` (`AckWake`) | `Idempotent` | acks are a set: acking an acked sequence answers `Ok` and changes nothing |
//! | `complete_process_lease` (`CompleteLease`) | `Idempotent` | it releases only the lease holding its token; once released, the same completion is a stale no-op answering `Ok` |
//! | `set_external_ref` (`SetExternalRef`) | `Idempotent` | writes the value the request carries; a second commit writes it again (only `updated_at_ms` moves) |
//! | `clear_process_wait` (`SetWait { wait: None }`) | `Idempotent` | clears the wait; clearing again answers the same record |
//! | `append_event` / `complete_process` with a replay key (`Append`) | `Idempotent` | the replay key makes a second send return the original event (spec step 2), so a committed first attempt is not appended twice |
//! | `append_event` without a replay key (`Append`) | `Never` | a second send would append a second event |
//! | fenced writes: `append_event_fenced`, `complete_process_fenced`, `set_process_wait_fenced` (`Append`, `SetWait` with a fence) | `Never` | a second send is checked against the lease as it is then: had the first committed and the lease then expired or changed hands, the retry would answer `LeaseFenced` for a write that happened |
//! | `set_process_wait` (`SetWait { wait: Some }`) | `Never` | refused on a terminal process: had the first attempt committed and the process then completed (which clears the wait), a retry would answer `AlreadyTerminal` for a call that succeeded |
//! | `claim_process_lease` (`ClaimLease`) | `Never` | each claim takes a new lease token and fencing token: a retry after a committed claim would bump the token again and return a lease the caller did not get first |
//! | `renew_process_lease` (`RenewLease`) | `Never` | its answer depends on the lease's expiry, which the first attempt moved: with a short ttl a committed renewal could be answered `LeaseMissingOrExpired` on retry |
//!
//! `Idempotent` means a second application gives the answer the first
//! would have given, whatever the first did. Between the lost answer and
//! the retry another caller may change the same field (say, set another
//! external ref); the retry then writes the caller's value again, as if
//! its call had been ordered after the other one, which it may be: it had
//! not returned. A `Never` call reports
//! [`RegistryError::ProcessRestarted`] (it was not committed, or the
//! commit is visible to a read).
//!
//! A call that needs the replacement of a dead actor waits for it by asking
//! the supervisor ([`SupervisorMsg::Replace`]), which answers once it has
//! handled the death: with the restarted actor, `Quarantined`, or the
//! error of a failed restart. There is no retry budget to run out while a
//! slow supervisor gets round to it; what bounds the wait is the
//! supervisor, and shutdown, which answers every such question `Stopped`.

use std::future::Future;
use std::sync::Arc;

use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::OwnedSemaphorePermit;

use super::config::OverloadPolicy;
use super::lifecycle::ActorProcessRegistry;
use super::process::messages::{Admission, ProcessMsg};
use super::routes::{ActiveProcess, Slot, TryPermit};
use super::supervisor::messages::SupervisorMsg;
use super::supervisor::MAX_PLANS;
use crate::error::RegistryError;
use crate::rules::limits::truncated;
use crate::store::{CommittedView, InlineRead};

/// A reply port carrying a result.
pub(crate) type Reply<T> = RpcReplyPort<Result<T, RegistryError>>;

/// Where the answer sent to a [`Reply`] arrives.
type Answer<T> = ractor::concurrency::OneshotReceiver<Result<T, RegistryError>>;

/// Whether a call whose answer was lost with its actor is sent again to
/// the replacement (the table in the module docs says which call has which).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads: the answer does not depend on which actor gives it.
    Transparent,
    /// Mutations whose second application answers as the first did and
    /// changes nothing more: sent again.
    Idempotent,
    /// Other mutations: report [`RegistryError::ProcessRestarted`].
    Never,
}

/// Tells the process actor that a parked caller went away (future dropped).
struct WaiterGuard {
    actor: ActorRef<ProcessMsg>,
    waiter_id: u64,
    armed: bool,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if self.armed {
            // The actor may be gone already; then there is nothing to clean.
            let _ = self.actor.send_message(ProcessMsg::CancelWaiter { waiter_id: self.waiter_id });
        }
    }
}

impl ActorProcessRegistry {
    /// The running actor of a process, activating one when it is passive.
    pub(super) async fn active(&self, process_id: &str) -> Result<Arc<ActiveProcess>, RegistryError> {
        match self.shared().routes.slot(process_id) {
            None if self.shared().store.shared().is_none() => Err(RegistryError::unknown(process_id)),
            Some(Slot::Active(active)) => Ok(active),
            Some(Slot::Quarantined(_)) => Err(RegistryError::Quarantined { process_id: process_id.to_owned() }),
            // Passive, or (with a shared store) perhaps registered by
            // another node: the supervisor activates or adopts it.
            // Boxed, as every slow path of a call: a call's future is
            // moved at least once, so its size is paid on every call.
            None | Some(Slot::Passive) => {
                Box::pin(self.ask_supervisor(process_id, |reply| SupervisorMsg::Activate {
                    process_id: process_id.to_owned(),
                    reply,
                }))
                .await
            }
        }
    }

    /// A mailbox slot on `active`, per the overload policy; `None` when the
    /// actor is passivating (its permits are taken or closed) and the call
    /// must be routed again. `Overloaded` only when `capacity` calls are in
    /// flight, never because of a passivation.
    pub(super) async fn permit(
        &self,
        process_id: &str,
        active: &ActiveProcess,
    ) -> Result<Option<OwnedSemaphorePermit>, RegistryError> {
        match self.shared().mailbox.policy {
            OverloadPolicy::Wait => match active.mailbox.try_acquire() {
                TryPermit::Granted(permit) => Ok(Some(permit)),
                TryPermit::Passivating => Ok(None),
                TryPermit::Full => Ok(Box::pin(active.mailbox.acquire()).await),
            },
            OverloadPolicy::Reject => match active.mailbox.try_acquire() {
                TryPermit::Granted(permit) => Ok(Some(permit)),
                TryPermit::Passivating => Ok(None),
                TryPermit::Full => Err(RegistryError::Overloaded {
                    process_id: process_id.to_owned(),
                    capacity: self.shared().mailbox.capacity,
                }),
            },
        }
    }

    pub(super) fn lost(&self, process_id: &str) -> RegistryError {
        if self.shared().is_stopping() {
            RegistryError::stopped(process_id)
        } else {
            RegistryError::ProcessRestarted { process_id: process_id.to_owned() }
        }
    }

    /// Sends `build(reply)` to the process's actor and awaits the answer.
    ///
    /// A send refused by an actor that is stopping hands the message back,
    /// and it is re-sent unchanged to the replacement actor: it was never
    /// seen, so this is safe for every call. A message that was delivered
    /// but never answered died with its actor: during shutdown that is
    /// `Stopped`; otherwise a `Transparent` or `Idempotent` call is built
    /// and sent again to the replacement, and a `Never` call reports
    /// `ProcessRestarted`. Either
    /// way the call waits for the replacement as long as the supervisor
    /// takes to start it (see [`Self::replacement`]), with no retry budget.
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        process_id: &str,
        retry: Retry,
        mut build: impl FnMut(Reply<T>) -> Option<ProcessMsg>,
    ) -> Result<T, RegistryError> {
        let mut active = self.active(process_id).await?;
        let mut plans = 0;
        loop {
            plans += 1;
            // A message a stopping actor refused, with its answer's
            // receiver, for the replacement. Boxed, and the message is built
            // only once a permit is held: a call waiting for a permit (a
            // flood of them, on a full mailbox) carries neither.
            let mut refused: Option<Box<(ProcessMsg, Answer<T>)>> = None;
            // The delivery loop is the match's scrutinee, so its answer (as
            // big as a whole record for some calls) is gone before the
            // replacement below is awaited: a `let` binding would keep it in
            // this future, which every pending call carries.
            let answer_lost = match loop {
                let Some(permit) = self.permit(process_id, &active).await? else {
                    // Passivating: the actor marks its slot passive next.
                    tokio::task::yield_now().await;
                    active = self.active(process_id).await?;
                    continue;
                };
                let (message, rx) = match refused.take() {
                    Some(unsent) => *unsent,
                    None => {
                        let (tx, rx) = ractor::concurrency::oneshot();
                        let Some(message) = build(RpcReplyPort::from(tx)) else {
                            return Err(self.lost(process_id));
                        };
                        (message, rx)
                    }
                };
                match active.actor.send_message(message) {
                    Ok(()) => {
                        // The permit is held until the answer is in.
                        let answered = rx.await;
                        drop(permit);
                        break answered;
                    }
                    Err(MessagingErr::SendErr(message)) => refused = Some(Box::new((message, rx))),
                    Err(_) => return Err(self.lost(process_id)),
                }
                drop(permit);
                active = Box::pin(self.replacement(process_id, &active)).await?;
            } {
                // Another node committed to the process first: nothing was
                // committed, and the actor has reloaded; plan again.
                Ok(Err(RegistryError::Contended { .. })) if plans < MAX_PLANS => false,
                Ok(Err(RegistryError::Contended { process_id, .. })) => {
                    return Err(RegistryError::Contended { process_id, attempts: plans });
                }
                Ok(answer) => return answer,
                Err(_) if retry == Retry::Never => return Err(self.lost(process_id)),
                Err(_) => true,
            };
            if answer_lost {
                active = Box::pin(self.replacement(process_id, &active)).await?;
            }
        }
    }

    /// The actor that replaces `gone`, an actor that refused a message or
    /// dropped one unanswered (it stopped, or died under it).
    ///
    /// While the routing table still names `gone`, the supervisor has not
    /// handled its end yet: the supervisor is asked, and answers once it
    /// has (with the restarted actor, or `Quarantined`, or the error of a
    /// failed restart). So this waits exactly as long as the supervisor
    /// takes, however slow, and never reports a restart that has not
    /// happened. Once the table names something else, that is routed to as
    /// usual. At shutdown it is `Stopped`: the question is refused, or
    /// dropped with the supervisor's mailbox.
    async fn replacement(&self, process_id: &str, gone: &ActiveProcess) -> Result<Arc<ActiveProcess>, RegistryError> {
        if self.shared().is_stopping() {
            return Err(RegistryError::stopped(process_id));
        }
        let gone = gone.actor.get_id();
        match self.shared().routes.slot(process_id) {
            Some(Slot::Active(current)) if current.actor.get_id() == gone => {
                self.ask_supervisor(process_id, |reply| SupervisorMsg::Replace {
                    process_id: process_id.to_owned(),
                    gone,
                    reply,
                })
                .await
            }
            _ => self.active(process_id).await,
        }
    }

    /// A read of committed state, answered by `answer` over it.
    ///
    /// When the store keeps committed state in memory
    /// ([`ProcessStore::read_inline`](crate::store::ProcessStore::read_inline):
    /// the memory store), `answer` runs in the caller's task over the
    /// store's state: no message, no activation, and the store's lock on
    /// the process is held only while `answer` copies `Arc`s. Otherwise it
    /// is asked of the process's actor like any `Transparent` call (`build`)
    /// or, when the process is quarantined (it has no actor), answered from
    /// the read-only view of its committed state, without starting an actor.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(Reply<T>) -> ProcessMsg,
        answer: impl Fn(CommittedView<'_>) -> T,
    ) -> Result<T, RegistryError> {
        let mut inline = None;
        match self.shared().store.read_inline(process_id, &mut |view| inline = Some(answer(view))) {
            InlineRead::Read => {
                if let Some(answered) = inline {
                    return Ok(answered);
                }
            }
            InlineRead::NotHeld => return Err(RegistryError::unknown(process_id)),
            InlineRead::Unsupported => {}
        }
        // Boxed: the actor path's future is large, and every inline read
        // would otherwise pay for moving it (a third of a read's cost).
        Box::pin(self.read_from_actor(process_id, build, answer)).await
    }

    async fn read_from_actor<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(Reply<T>) -> ProcessMsg,
        answer: impl Fn(CommittedView<'_>) -> T,
    ) -> Result<T, RegistryError> {
        loop {
            match self.ask(process_id, Retry::Transparent, |reply| Some(build(reply))).await {
                Err(RegistryError::Quarantined { .. }) => {
                    if let Some(Slot::Quarantined(quarantine)) = self.shared().routes.slot(process_id) {
                        let committed = quarantine.committed(self.shared().store.as_ref(), process_id).await?;
                        return Ok(answer(committed.committed()));
                    }
                    // Released in between: ask its (new) actor.
                }
                answered => return answered,
            }
        }
    }

    /// Parks on the process's actor until `build`'s wait is answered; the
    /// guard cancels the wait if this future is dropped first.
    ///
    /// The message travels with a mailbox permit (see [`Admission`]), taken
    /// even under [`OverloadPolicy::Reject`] by waiting: a wait is never
    /// refused as `Overloaded`, and the permit is held only until the
    /// actor has parked it, so a parked waiter holds none.
    pub(super) async fn park<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(u64, Admission, Reply<T>) -> ProcessMsg,
    ) -> Result<T, RegistryError> {
        let mut active = self.active(process_id).await?;
        loop {
            let Some(admitted) = active.mailbox.acquire().await else {
                // Passivating: the actor marks its slot passive next.
                tokio::task::yield_now().await;
                active = self.active(process_id).await?;
                continue;
            };
            let waiter_id = self.shared().next_waiter_id();
            let (tx, rx) = ractor::concurrency::oneshot();
            if active.actor.send_message(build(waiter_id, admitted, RpcReplyPort::from(tx))).is_ok() {
                let mut guard = WaiterGuard { actor: active.actor.clone(), waiter_id, armed: true };
                let answer = rx.await;
                guard.armed = false;
                match answer {
                    Ok(answer) => return answer,
                    Err(_) if self.shared().is_stopping() => return Err(RegistryError::stopped(process_id)),
                    // Its actor went away: re-park on the replacement.
                    Err(_) => {}
                }
            }
            active = Box::pin(self.replacement(process_id, &active)).await?;
        }
    }

    /// Sends `build(reply)` to the supervisor and awaits the answer.
    pub(super) async fn ask_supervisor<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl FnOnce(Reply<T>) -> SupervisorMsg,
    ) -> Result<T, RegistryError> {
        if self.shared().is_stopping() {
            return Err(RegistryError::stopped(process_id));
        }
        let (tx, rx) = ractor::concurrency::oneshot();
        self.supervisor()
            .send_message(build(RpcReplyPort::from(tx)))
            .map_err(|_| RegistryError::stopped(process_id))?;
        rx.await.unwrap_or_else(|_| Err(RegistryError::stopped(process_id)))
    }
}

/// Runs `call` inside a span naming the operation and the process, when a
/// subscriber listens at debug level; otherwise inside no span (entering
/// `Span::none()` is a branch). A plain function, not an `async fn`: an
/// async wrapper with one branch per case would hold `call` twice over,
/// and every call would pay for moving that future.
pub(super) fn traced<F: Future>(
    operation: &'static str,
    process_id: &str,
    call: F,
) -> tracing::instrument::Instrumented<F> {
    use tracing::Instrument;
    let span = if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug_span!("process_registry", operation, process_id = %truncated(process_id))
    } else {
        tracing::Span::none()
    };
    call.instrument(span)
}
