//! How a worker is configured: timing, concurrency, and each handler's
//! failure policy. Plain data, checked once when the worker starts.

use std::time::Duration;

use crate::error::RegistryError;

/// What a handler's error or panic leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerPolicy {
    /// Runs of the handler per claim, the first included (at least 1). A
    /// failed run before the last is retried after a backoff, under the
    /// same lease; after the last, the process completes with a
    /// [`Failure`](crate::ProcessAwaitOutput::Failure) outcome (code
    /// `handler_error` or `handler_panicked`).
    pub max_attempts: u32,
    /// The backoff before the second run; it doubles for each further run.
    pub initial_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
}

impl Default for HandlerPolicy {
    /// One attempt: an error or a panic fails the process.
    fn default() -> Self {
        Self { max_attempts: 1, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(10) }
    }
}

impl HandlerPolicy {
    /// `max_attempts` runs, backing off from `initial_backoff` (doubling)
    /// up to the default maximum of 10 s.
    #[must_use]
    pub fn retry(max_attempts: u32, initial_backoff: Duration) -> Self {
        Self { max_attempts, initial_backoff, ..Self::default() }
    }

    /// The backoff after failed run `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial_backoff.saturating_mul(1 << doublings).min(self.max_backoff)
    }

    fn validate(&self, name: &str) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err(format!("handler `{name}`: max_attempts is 0; a handler runs at least once"));
        }
        Ok(())
    }
}

/// The worker's timing and concurrency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The lease owner id: unique per live worker (two live workers with
    /// one owner id would take each other's processes). A worker restarted
    /// after a crash may reuse its id: it then reclaims its processes at
    /// once instead of after their leases expire.
    pub owner_id: String,
    /// Handlers running at once (default 16).
    pub concurrency: usize,
    /// The ttl of every lease claimed and renewed (default 30 s, by the
    /// registry's clock; at most [`MAX_LEASE_TTL`]).
    pub lease_ttl: Duration,
    /// How often a held lease is renewed; `None` is a third of the ttl.
    pub renew_interval: Option<Duration>,
    /// How often the worklist is swept when no registration wakes the
    /// worker earlier (default 1 s).
    pub sweep_interval: Duration,
    /// How long a handler whose lease was lost may keep running after its
    /// cancellation token fires, before its future is dropped (default 1 s).
    pub cancel_grace: Duration,
}

/// The longest lease ttl a worker takes: one year. A longer lease is no
/// lease (a crashed worker's processes would wait that long), and timers
/// set that far ahead overflow the runtime's clock.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(366 * 24 * 60 * 60);

impl WorkerConfig {
    /// The defaults, under `owner_id`.
    pub fn new(owner_id: impl Into<String>) -> Self {
        Self {
            owner_id: owner_id.into(),
            concurrency: 16,
            lease_ttl: Duration::from_secs(30),
            renew_interval: None,
            sweep_interval: Duration::from_secs(1),
            cancel_grace: Duration::from_secs(1),
        }
    }

    /// The renewal interval in effect.
    pub fn effective_renew_interval(&self) -> Duration {
        self.renew_interval.unwrap_or(self.lease_ttl / 3)
    }

    /// The lease ttl in registry milliseconds.
    pub(crate) fn lease_ttl_ms(&self) -> u64 {
        u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Checks every bound; [`RegistryError::InvalidConfig`] names the first
    /// one broken.
    pub(crate) fn validate<'a>(
        &self,
        handlers: impl Iterator<Item = (&'a str, &'a HandlerPolicy)>,
    ) -> Result<(), RegistryError> {
        let invalid = |reason: String| Err(RegistryError::InvalidConfig { reason });
        if self.owner_id.contains('\0') {
            return invalid("worker owner_id contains a NUL character, which no store keeps as text".to_owned());
        }
        if self.owner_id.is_empty() {
            return invalid("worker owner_id is empty".to_owned());
        }
        if self.concurrency == 0 || self.concurrency > tokio::sync::Semaphore::MAX_PERMITS {
            return invalid(format!("worker concurrency is {}; it must be at least 1", self.concurrency));
        }
        if self.lease_ttl < Duration::from_millis(1) || self.lease_ttl > MAX_LEASE_TTL {
            return invalid(format!(
                "worker lease_ttl is {:?}; it must be at least 1 ms and at most {MAX_LEASE_TTL:?}",
                self.lease_ttl
            ));
        }
        let renew = self.effective_renew_interval();
        if renew.is_zero() || renew >= self.lease_ttl {
            return invalid(format!(
                "worker renew_interval is {renew:?}; it must be above 0 and below the lease ttl ({:?})",
                self.lease_ttl
            ));
        }
        if self.sweep_interval.is_zero() {
            return invalid("worker sweep_interval is 0".to_owned());
        }
        let mut any = false;
        for (name, policy) in handlers {
            policy.validate(name).or_else(invalid)?;
            any = true;
        }
        if !any {
            return invalid("a worker needs at least one handler".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let policy = HandlerPolicy {
            max_attempts: 40,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        let steps: Vec<_> = (1..=5).map(|attempt| policy.backoff(attempt).as_millis()).collect();
        assert_eq!(steps, [10, 20, 40, 50, 50]);
        assert_eq!(policy.backoff(40), Duration::from_millis(50));
    }

    #[test]
    fn every_bound_is_checked() {
        let policy = HandlerPolicy::default();
        let handlers = || [("job", &policy)].into_iter();
        assert!(WorkerConfig::new("w").validate(handlers()).is_ok());
        assert!(WorkerConfig { lease_ttl: MAX_LEASE_TTL, ..WorkerConfig::new("w") }.validate(handlers()).is_ok());
        let broken = [
            WorkerConfig { owner_id: String::new(), ..WorkerConfig::new("w") },
            WorkerConfig { concurrency: 0, ..WorkerConfig::new("w") },
            WorkerConfig { lease_ttl: Duration::ZERO, ..WorkerConfig::new("w") },
            // Its renewal timer would overflow the clock inside the run task.
            WorkerConfig { lease_ttl: Duration::MAX, ..WorkerConfig::new("w") },
            WorkerConfig { lease_ttl: MAX_LEASE_TTL + Duration::from_millis(1), ..WorkerConfig::new("w") },
            WorkerConfig { renew_interval: Some(Duration::from_secs(30)), ..WorkerConfig::new("w") },
            WorkerConfig { renew_interval: Some(Duration::ZERO), ..WorkerConfig::new("w") },
            WorkerConfig { sweep_interval: Duration::ZERO, ..WorkerConfig::new("w") },
        ];
        for config in broken {
            assert!(matches!(config.validate(handlers()), Err(RegistryError::InvalidConfig { .. })), "{config:?}");
        }
        assert!(WorkerConfig::new("w").validate([].into_iter()).is_err());
        let never = HandlerPolicy { max_attempts: 0, ..HandlerPolicy::default() };
        assert!(WorkerConfig::new("w").validate([("job", &never)].into_iter()).is_err());
    }
}
