//! What every actor and the facade share: the routing table, the clock,
//! the limits, the schema cache, the store, the configuration and the
//! counters. Created once by `start`; read by everyone, written only
//! through the routing table's and counters' own rules.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::config::{MailboxConfig, RegistryConfig, RestartIntensity};
use super::routes::Routes;
use super::schemas::SchemaCache;
use super::stats::Counters;
use super::supervisor::grants::PublishedGrants;
use crate::clock::Clock;
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
    next_waiter: AtomicU64,
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
}
