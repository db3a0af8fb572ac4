//! How a registry is configured: time, input limits, the store, mailbox
//! bounds, restart intensity and passivation.
//!
//! [`RegistryConfig`] is plain data with builders; the registry reads it
//! once, in `start`, and keeps its parts in the shared state.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::clock::{Clock, SystemClock};
use crate::error::RegistryError;
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

impl MailboxConfig {
    /// The largest `capacity` accepted: what a tokio semaphore holds
    /// ([`Semaphore::MAX_PERMITS`]), and at most `u32::MAX`, since
    /// passivation takes every permit at once with `try_acquire_many(u32)`.
    pub const MAX_CAPACITY: usize =
        if Semaphore::MAX_PERMITS < u32::MAX as usize { Semaphore::MAX_PERMITS } else { u32::MAX as usize };
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

/// The default of [`RegistryConfig::ready_on_register`]: a few hundred
/// actors (a few KiB each) is nothing next to the processes a runtime that
/// registers in bursts holds, and enough for every registration a runtime
/// calls at once.
pub const DEFAULT_READY_ON_REGISTER: usize = 256;

/// The longest process id a shared store's notices can carry: one id alone,
/// every byte escaped (`\u00XX`, 6 bytes), in `["..."]`, stays under
/// PostgreSQL's 8,000-byte NOTIFY payload.
const MAX_SHARED_ID_BYTES: usize = 1_300;

/// The longest idle time passivation accepts; `None` never passivates.
const MAX_PASSIVATE_AFTER: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How to start an [`ActorProcessRegistry`](crate::ActorProcessRegistry).
///
/// # Validation
///
/// [`ActorProcessRegistry::start`](crate::ActorProcessRegistry::start)
/// refuses, with [`RegistryError::InvalidConfig`], a configuration it
/// cannot run safely, before it starts anything:
///
/// - `mailbox.capacity` must be in `1..=`[`MailboxConfig::MAX_CAPACITY`]
///   (`u32::MAX` on 64-bit targets): tokio's semaphore panics above its
///   maximum, and passivation takes every permit with one
///   `try_acquire_many(u32)`, which cannot prove a larger mailbox empty;
/// - `restart_intensity.within_ms` must be at least 1: a window of 0 ms
///   would count only crashes of the same millisecond;
/// - `passivate_after`, when set, must be between 1 ms (the clock's
///   resolution: a shorter idle time is 0 ms) and 365 days (the sweep
///   timer could not be scheduled that far ahead); `None` never passivates;
/// - `limits` must pass [`Limits::validate`]: no byte limit of 0, and none
///   below what the core event types need;
/// - with a [shared](crate::ProcessStore::shared) store, `limits.max_id_bytes`
///   must be at most 1,300: the store's notices carry process ids, and a
///   PostgreSQL NOTIFY payload holds under 8,000 bytes (an id escaped as
///   JSON takes up to 6 bytes per byte).
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
    /// How many freshly registered processes may have an actor started by
    /// their registration that no call has reached yet.
    ///
    /// While fewer than this many wait for their first call, a
    /// registration starts its process's actor before it answers, so the
    /// calls a runtime makes right after registering a process (claim its
    /// lease, append its first event) find it running and pay no
    /// activation. Beyond the bound (a burst of registrations nobody calls
    /// yet) a process starts passive and its first call activates it, so a
    /// million registrations in a burst keep at most this many actors
    /// alive. An actor leaves the count at its first call or when it
    /// stops. `0` starts no actor at registration. Only stores one registry
    /// writes alone start actors at registration: with a shared store
    /// another node may take the process first.
    pub ready_on_register: usize,
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
            ready_on_register: DEFAULT_READY_ON_REGISTER,
        }
    }
}

impl RegistryConfig {
    /// Checks the bounds listed under [Validation](Self#validation).
    pub fn validate(&self) -> Result<(), RegistryError> {
        let invalid = |reason: String| Err(RegistryError::InvalidConfig { reason });
        let capacity = self.mailbox.capacity;
        if capacity == 0 || capacity > MailboxConfig::MAX_CAPACITY {
            return invalid(format!(
                "mailbox.capacity is {capacity}; it must be between 1 and {}",
                MailboxConfig::MAX_CAPACITY
            ));
        }
        if self.restart_intensity.within_ms == 0 {
            return invalid("restart_intensity.within_ms is 0; the window must be at least 1 ms".to_owned());
        }
        if let Some(idle) = self.passivate_after {
            if idle < Duration::from_millis(1) || idle > MAX_PASSIVATE_AFTER {
                return invalid(format!(
                    "passivate_after is {idle:?}; it must be between 1 ms and 365 days (None never passivates)"
                ));
            }
        }
        if self.store.shared().is_some() && self.limits.max_id_bytes > MAX_SHARED_ID_BYTES {
            return invalid(format!(
                "limits.max_id_bytes is {}; with a shared store it must be at most {MAX_SHARED_ID_BYTES}: \
                 its notices carry process ids, and one NOTIFY payload holds at most 8,000 bytes",
                self.limits.max_id_bytes
            ));
        }
        self.limits.validate().or_else(invalid)
    }

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

    /// Starts the actor of a fresh registration while fewer than `ready`
    /// such actors wait for their first call (see
    /// [`Self::ready_on_register`]; `0`: never).
    #[must_use]
    pub fn with_ready_on_register(mut self, ready: usize) -> Self {
        self.ready_on_register = ready;
        self
    }
}
