//! What every actor and the facade share: the routing table, the clock,
//! the limits, the schema cache, the store, the configuration and the
//! counters. Created once by `start`; read by everyone, written only
//! through the routing table's and counters' own rules.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{MailboxConfig, RegistryConfig, RestartIntensity};
use super::routes::Routes;
use super::schemas::SchemaCache;
use super::stats::Counters;
use super::supervisor::grants::PublishedGrants;
use crate::clock::Clock;
use crate::events::ProcessTerminalState;
use crate::model::ProcessRecord;
use crate::rules::limits::Limits;
use crate::store::ProcessStore;

/// What every actor and the facade share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) routes: Routes,
    /// The grant index: the supervisor writes it, callers read it.
    pub(crate) grants: PublishedGrants,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) schemas: SchemaCache,
    pub(crate) store: Arc<dyn ProcessStore>,
    pub(crate) mailbox: MailboxConfig,
    pub(crate) restart_intensity: RestartIntensity,
    pub(crate) passivate_after: Option<Duration>,
    pub(crate) counters: Counters,
    pub(crate) stopping: AtomicBool,
    /// Counts committed registrations, for
    /// [`FencedProcessRegistry::registration_notices`](crate::FencedProcessRegistry::registration_notices).
    pub(crate) registrations: tokio::sync::watch::Sender<u64>,
    /// Actors started by their registration that no call reached yet.
    pub(crate) ready: ReadyBudget,
    next_waiter: AtomicU64,
}

/// Plan numbers, shared by every registry in the OS process: two
/// registries started on one store object never hand out the same plan.
static NEXT_PLAN: AtomicU64 = AtomicU64::new(1);

/// A plan number above every one handed out before in this OS process
/// (see [`Commit::Process`](crate::store::Commit::Process)'s `plan`).
pub(crate) fn next_plan() -> u64 {
    NEXT_PLAN.fetch_add(1, Ordering::Relaxed)
}

impl Shared {
    pub(crate) fn new(config: RegistryConfig) -> Self {
        Self {
            routes: Routes::default(),
            grants: PublishedGrants::default(),
            clock: config.clock,
            schemas: SchemaCache::new(config.limits.max_cached_schemas),
            limits: config.limits,
            store: config.store,
            mailbox: config.mailbox,
            restart_intensity: config.restart_intensity,
            passivate_after: config.passivate_after,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            registrations: tokio::sync::watch::Sender::new(0),
            ready: ReadyBudget::new(config.ready_on_register),
            next_waiter: AtomicU64::new(1),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn next_waiter_id(&self) -> u64 {
        self.next_waiter.fetch_add(1, Ordering::Relaxed)
    }

    /// Files a durably terminal process under its terminal status in the
    /// status index, and counts it, once however often it is told: by the
    /// actor that committed the terminal event, by a replacement actor
    /// that starts from a record the dead one never settled (its commit
    /// became durable after it died), by a reload from another node.
    pub(crate) fn terminal_durable(&self, process_id: &str, state: ProcessTerminalState) {
        if self.routes.terminal_committed(process_id, state) {
            self.counters.count_terminal(state);
        }
    }

    /// [`Self::terminal_durable`] for a record read back from the store,
    /// when it is terminal.
    pub(crate) fn stored_status(&self, record: &ProcessRecord) {
        if let Some(state) = record.status.terminal_state() {
            self.terminal_durable(&record.id, state);
        }
    }
}

/// The bound on actors started by their registration that no call has
/// reached yet ([`RegistryConfig::ready_on_register`]): a semaphore with a
/// permit per place.
#[derive(Debug)]
pub(crate) struct ReadyBudget {
    places: Arc<Semaphore>,
    /// The bound, for the tests' count of places held.
    #[cfg(test)]
    limit: usize,
}

/// One place under the [`ReadyBudget`], held by an actor started at
/// registration until its first call; dropping it (with the actor's
/// state, however the actor ends) gives the place back.
pub(crate) type ReadyToken = OwnedSemaphorePermit;

impl ReadyBudget {
    fn new(limit: usize) -> Self {
        // More places than a semaphore holds could never be taken anyway.
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self {
            places: Arc::new(Semaphore::new(limit)),
            #[cfg(test)]
            limit,
        }
    }

    /// A place under the bound, or `None` when every place is held.
    pub(crate) fn take(&self) -> Option<ReadyToken> {
        Arc::clone(&self.places).try_acquire_owned().ok()
    }

    /// How many places are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.limit - self.places.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_budget_gives_out_at_most_its_limit_and_takes_places_back_on_drop() {
        let budget = ReadyBudget::new(2);
        let first = budget.take();
        let second = budget.take();
        assert!(first.is_some() && second.is_some());
        assert!(budget.take().is_none(), "both places are held");
        assert_eq!(budget.held(), 2);
        drop(first);
        assert_eq!(budget.held(), 1);
        let third = budget.take();
        assert!(third.is_some(), "the dropped place is given out again");
        drop((second, third));
        assert_eq!(budget.held(), 0);
        assert!(ReadyBudget::new(0).take().is_none(), "a limit of 0 gives out nothing");
    }
}
