//! The restart intensity: when a crashing process is quarantined.
//!
//! As OTP's supervisors do, the registry tolerates `max_restarts` failures
//! of one process within `within_ms` (by the registry clock) and
//! quarantines it on the next. [`FailureHistory`] keeps the recent failure
//! times per process; the supervisor owns the one history and asks it on
//! each failure.

use std::collections::{HashMap, VecDeque};

use crate::runtime::config::RestartIntensity;

/// How many processes' failure histories are kept before the stale ones are
/// forgotten.
const FAILURE_HISTORY: usize = 1024;

/// Recent failure times per process.
#[derive(Debug, Default)]
pub(crate) struct FailureHistory {
    failures: HashMap<String, VecDeque<u64>>,
}

impl FailureHistory {
    /// Records a failure of `process_id` at `now`; true when it exceeds
    /// `intensity`.
    pub(crate) fn exceeds(&mut self, process_id: &str, now: u64, intensity: RestartIntensity) -> bool {
        let recent = |at: u64| now.saturating_sub(at) <= intensity.within_ms;
        if self.failures.len() >= FAILURE_HISTORY {
            // Forget processes whose last failure left the window, so the
            // history stays bounded however many processes ever failed once.
            self.failures.retain(|_, failures| failures.back().is_some_and(|&at| recent(at)));
        }
        let failures = self.failures.entry(process_id.to_owned()).or_default();
        failures.push_back(now);
        while failures.front().is_some_and(|&at| !recent(at)) {
            failures.pop_front();
        }
        failures.len() > intensity.max_restarts
    }

    /// Forgets every failure of `process_id`: its next failure is counted
    /// as the first.
    pub(crate) fn forget(&mut self, process_id: &str) {
        self.failures.remove(process_id);
    }
}
