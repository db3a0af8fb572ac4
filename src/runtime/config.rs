//! How a registry is configured: time, input limits, the store, mailbox
//! bounds, restart intensity and passivation.
//!
//! [`RegistryConfig`] is plain data with builders; the registry reads it
//! once, in `start`, and keeps its parts in the shared state.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::rules::limits::Limits;
use crate::store::{MemoryStore, ProcessStore};

/// What callers do when a process has `capacity` calls in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverloadPolicy {
    /// Wait for a slot (async backpressure).
    #[default]
    Wait,
    /// Fail at once with [`RegistryError::Overloaded`](crate::RegistryError::Overloaded).
    /// Only calls in flight count: a call that races the passivation of an
    /// idle actor is routed to a fresh actor, never refused.
    Reject,
}

/// The bound on one process's mailbox.
///
/// ractor mailboxes are unbounded; the facade bounds them instead, with one
/// semaphore per active process, so a flood of calls on one process cannot
/// grow memory without limit. Parked waiters do not count against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxConfig {
    /// Calls in flight per process.
    pub capacity: usize,
    /// What a caller beyond the bound does.
    pub policy: OverloadPolicy,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self { capacity: 1024, policy: OverloadPolicy::Wait }
    }
}

/// How often a process actor may crash before it is quarantined, as OTP's
/// restart intensity: more than `max_restarts` within `within_ms` (by the
/// registry clock) quarantines the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartIntensity {
    /// Restarts allowed inside the window.
    pub max_restarts: usize,
    /// The window, in milliseconds.
    pub within_ms: u64,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self { max_restarts: 5, within_ms: 5_000 }
    }
}

/// How to start an [`ActorProcessRegistry`](crate::ActorProcessRegistry).
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where time comes from (leases, timestamps, restart windows, idleness).
    pub clock: Arc<dyn Clock>,
    /// Bounds on caller input.
    pub limits: Limits,
    /// Where committed state is kept.
    pub store: Arc<dyn ProcessStore>,
    /// The bound on each process's calls in flight.
    pub mailbox: MailboxConfig,
    /// When a crashing process is quarantined.
    pub restart_intensity: RestartIntensity,
    /// Stop the actor of a process idle (no call, nothing parked) this long;
    /// its state stays in the store and the next call re-activates it.
    /// `None` keeps actors until shutdown.
    pub passivate_after: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            store: Arc::new(MemoryStore::new()),
            mailbox: MailboxConfig::default(),
            restart_intensity: RestartIntensity::default(),
            passivate_after: Some(Duration::from_secs(30)),
        }
    }
}

impl RegistryConfig {
    /// Reads time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds input by `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps committed state in `store`.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn ProcessStore>) -> Self {
        self.store = store;
        self
    }

    /// Bounds each process's calls in flight.
    #[must_use]
    pub fn with_mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// Sets the restart intensity.
    #[must_use]
    pub fn with_restart_intensity(mut self, restart_intensity: RestartIntensity) -> Self {
        self.restart_intensity = restart_intensity;
        self
    }

    /// Passivates actors idle for `idle` (`None`: never).
    #[must_use]
    pub fn with_passivation(mut self, idle: Option<Duration>) -> Self {
        self.passivate_after = idle;
        self
    }
}
