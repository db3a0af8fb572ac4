//! The calling machinery: how one trait call reaches an actor and comes back.
//!
//! Each call looks its process up in the routing table, activates it through
//! the supervisor when it is passive, takes a mailbox permit (waiting or
//! refusing per the overload policy), sends one message with a reply port,
//! and awaits the reply. Parking calls (`wait_event_after`,
//! `await_process`) hold no permit and carry a guard that tells the actor
//! when their future is dropped.
//!
//! When a process actor dies under a call, the reply port closes. The
//! [`Retry`] policy of each message decides what follows: reads and waits
//! are retried on the restarted actor, transparently; a mutation gets
//! [`RegistryError::ProcessRestarted`] (it was not committed, or the commit
//! is visible to a read); during shutdown every call gets
//! [`RegistryError::Stopped`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use tokio::sync::OwnedSemaphorePermit;

use super::config::OverloadPolicy;
use super::lifecycle::ActorProcessRegistry;
use super::process::messages::ProcessMsg;
use super::process::state::ProcessState;
use super::routes::{ActiveProcess, Slot, TryPermit};
use super::supervisor::messages::SupervisorMsg;
use crate::error::RegistryError;
use crate::rules::limits::truncated;

/// How many times a call looks for a restarted actor before giving up.
const RESTART_ATTEMPTS: u32 = 200;

/// A reply port carrying a result.
pub(crate) type Reply<T> = RpcReplyPort<Result<T, RegistryError>>;

/// Whether a call may be sent again to a restarted actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads and waits: the answer does not depend on which actor gives it.
    Transparent,
    /// Mutations: report [`RegistryError::ProcessRestarted`].
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
            None => Err(RegistryError::unknown(process_id)),
            Some(Slot::Active(active)) => Ok(active),
            Some(Slot::Quarantined(_)) => Err(RegistryError::Quarantined { process_id: process_id.to_owned() }),
            Some(Slot::Passive) => {
                self.ask_supervisor(process_id, |reply| SupervisorMsg::Activate {
                    process_id: process_id.to_owned(),
                    reply,
                })
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
            OverloadPolicy::Wait => Ok(active.mailbox.acquire().await),
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
    /// `Stopped`; otherwise a `Transparent` call is built and sent again,
    /// and a mutation reports `ProcessRestarted`.
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        process_id: &str,
        retry: Retry,
        mut build: impl FnMut(Reply<T>) -> Option<ProcessMsg>,
    ) -> Result<T, RegistryError> {
        let mut attempts = 0u32;
        loop {
            let (tx, rx) = ractor::concurrency::oneshot();
            let Some(mut message) = build(RpcReplyPort::from(tx)) else {
                return Err(self.lost(process_id));
            };
            loop {
                let active = self.active(process_id).await?;
                let Some(_permit) = self.permit(process_id, &active).await? else {
                    // Passivating: the supervisor marks the process passive next.
                    tokio::task::yield_now().await;
                    continue;
                };
                match active.actor.send_message(message) {
                    Ok(()) => match rx.await {
                        Ok(answer) => return answer,
                        Err(_) => break,
                    },
                    Err(MessagingErr::SendErr(refused)) => message = refused,
                    Err(_) => return Err(self.lost(process_id)),
                }
                self.before_retry(process_id, &mut attempts).await?;
            }
            if retry == Retry::Never {
                return Err(self.lost(process_id));
            }
            self.before_retry(process_id, &mut attempts).await?;
        }
    }

    /// Waits a moment for the supervisor to replace a dead actor; gives up
    /// on shutdown or after `RESTART_ATTEMPTS`.
    pub(super) async fn before_retry(&self, process_id: &str, attempts: &mut u32) -> Result<(), RegistryError> {
        *attempts += 1;
        if self.shared().is_stopping() || *attempts > RESTART_ATTEMPTS {
            return Err(self.lost(process_id));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }

    /// A read of committed state: asked of the process's actor like any
    /// `Transparent` call, or, when the process is quarantined (it has no
    /// actor), answered by `answer` from the read-only view of its
    /// committed state, without starting an actor.
    pub(super) async fn read<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(Reply<T>) -> ProcessMsg,
        answer: impl Fn(&ProcessState) -> T,
    ) -> Result<T, RegistryError> {
        loop {
            match self.ask(process_id, Retry::Transparent, |reply| Some(build(reply))).await {
                Err(RegistryError::Quarantined { .. }) => {
                    if let Some(Slot::Quarantined(quarantine)) = self.shared().routes.slot(process_id) {
                        let committed = quarantine.committed(self.shared().store.as_ref(), process_id).await?;
                        return Ok(answer(&committed));
                    }
                    // Released in between: ask its (new) actor.
                }
                answered => return answered,
            }
        }
    }

    /// Parks on the process's actor until `build`'s wait is answered; the
    /// guard cancels the wait if this future is dropped first.
    pub(super) async fn park<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(u64, Reply<T>) -> ProcessMsg,
    ) -> Result<T, RegistryError> {
        let mut attempts = 0u32;
        loop {
            let actor = self.active(process_id).await?.actor.clone();
            let waiter_id = self.shared().next_waiter_id();
            let (tx, rx) = ractor::concurrency::oneshot();
            if actor.send_message(build(waiter_id, RpcReplyPort::from(tx))).is_ok() {
                let mut guard = WaiterGuard { actor, waiter_id, armed: true };
                let answer = rx.await;
                guard.armed = false;
                match answer {
                    Ok(answer) => return answer,
                    Err(_) if self.shared().is_stopping() => return Err(RegistryError::stopped(process_id)),
                    // Restarted: re-park on the new actor straight away.
                    Err(_) => continue,
                }
            }
            self.before_retry(process_id, &mut attempts).await?;
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
/// subscriber listens at debug level. Otherwise the call runs bare: even a
/// disabled span's wrapper costs about 3% of a sequential append.
pub(super) async fn traced<T>(operation: &'static str, process_id: &str, call: impl Future<Output = T>) -> T {
    use tracing::Instrument;
    if tracing::enabled!(tracing::Level::DEBUG) {
        call.instrument(tracing::debug_span!("process_registry", operation, process_id = %truncated(process_id))).await
    } else {
        call.await
    }
}
