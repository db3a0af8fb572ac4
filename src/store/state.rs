//! The committed state of one process, and the changes that move it.
//!
//! [`StoredProcess`] is what a store keeps; [`ProcessState`] is what a
//! process actor works with: the stored part plus indexes derived from it
//! (events by type, wake sequences) that make every read O(result) or
//! O(log n). Both move only by [`ProcessChange`]s, applied with infallible
//! pushes and inserts, so applying a change cannot fail half-way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::events::ProcessEvent;
use crate::model::ProcessRecord;
use crate::rules::append::ReplayEntry;
use crate::rules::lease::LeaseState;

/// One committed change of a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessChange {
    /// The process was registered with this record.
    Registered {
        /// The new record.
        record: Arc<ProcessRecord>,
    },
    /// An event was appended.
    Appended {
        /// The event.
        event: Arc<ProcessEvent>,
        /// The replay index entry it adds, if it had a replay key.
        replay: Option<(String, ReplayEntry)>,
        /// The record after the event.
        record: Arc<ProcessRecord>,
    },
    /// The record changed (wait state, external ref).
    RecordUpdated {
        /// The new record.
        record: Arc<ProcessRecord>,
    },
    /// A wake was acknowledged.
    WakeAcked {
        /// The acked event's sequence.
        sequence: u64,
    },
    /// The lease changed (claimed, renewed or released).
    LeaseUpdated {
        /// The new lease state.
        lease: LeaseState,
    },
}

/// What a store keeps of one process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredProcess {
    /// The current record.
    pub record: Arc<ProcessRecord>,
    /// The event log; `events[i].sequence == i + 1`.
    pub events: Vec<Arc<ProcessEvent>>,
    /// Replay key -> the event it committed. (A B-tree: empty, it costs no
    /// allocation, which matters for a million processes at rest.)
    pub replay: BTreeMap<String, ReplayEntry>,
    /// Acked wake sequences.
    pub acked: BTreeSet<u64>,
    /// The lease and the last fencing token.
    pub lease: LeaseState,
}

impl StoredProcess {
    /// A freshly registered process.
    pub fn new(record: Arc<ProcessRecord>) -> Self {
        Self {
            record,
            events: Vec::new(),
            replay: BTreeMap::new(),
            acked: BTreeSet::new(),
            lease: LeaseState::default(),
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &ProcessChange) {
        match change {
            ProcessChange::Registered { record } | ProcessChange::RecordUpdated { record } => {
                self.record = Arc::clone(record);
            }
            ProcessChange::Appended { event, replay, record } => {
                self.events.push(Arc::clone(event));
                if let Some((key, entry)) = replay {
                    self.replay.insert(key.clone(), entry.clone());
                }
                self.record = Arc::clone(record);
            }
            ProcessChange::WakeAcked { sequence } => {
                self.acked.insert(*sequence);
            }
            ProcessChange::LeaseUpdated { lease } => self.lease = lease.clone(),
        }
    }

    /// The last sequence (0 for an empty log).
    pub fn last_sequence(&self) -> u64 {
        self.events.last().map_or(0, |event| event.sequence)
    }
}

/// Read indexes over an event log.
#[derive(Clone, Debug, Default)]
pub struct EventLog {
    /// Sequences of each event type, ascending.
    by_type: HashMap<String, Vec<u64>>,
    /// Sequences of events that materialized a wake, ascending.
    wakes: Vec<u64>,
}

impl EventLog {
    fn index(&mut self, event: &ProcessEvent) {
        match self.by_type.get_mut(&event.event_type) {
            Some(sequences) => sequences.push(event.sequence),
            None => {
                self.by_type.insert(event.event_type.clone(), vec![event.sequence]);
            }
        }
        if event.is_wake() {
            self.wakes.push(event.sequence);
        }
    }
}

/// A process actor's working state: the stored part plus read indexes.
#[derive(Clone, Debug)]
pub struct ProcessState {
    stored: StoredProcess,
    log: EventLog,
}

impl ProcessState {
    /// Builds the indexes over a stored process. O(events).
    pub fn from_stored(stored: StoredProcess) -> Self {
        let mut log = EventLog::default();
        for event in &stored.events {
            log.index(event);
        }
        Self { stored, log }
    }

    /// The stored part.
    pub fn stored(&self) -> &StoredProcess {
        &self.stored
    }

    /// The current record.
    pub fn record(&self) -> &Arc<ProcessRecord> {
        &self.stored.record
    }

    /// Applies one change to the stored part and the indexes.
    pub fn apply(&mut self, change: &ProcessChange) {
        if let ProcessChange::Appended { event, .. } = change {
            self.log.index(event);
        }
        self.stored.apply(change);
    }

    /// The last sequence (0 for an empty log).
    pub fn last_sequence(&self) -> u64 {
        self.stored.last_sequence()
    }

    /// The event with `sequence`, if committed.
    pub fn event(&self, sequence: u64) -> Option<&Arc<ProcessEvent>> {
        let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.stored.events.get(index)
    }

    /// Events after `after`, ascending. O(result).
    pub fn events_after(&self, after: u64) -> &[Arc<ProcessEvent>] {
        let start = usize::try_from(after).unwrap_or(usize::MAX).min(self.stored.events.len());
        &self.stored.events[start..]
    }

    /// The last `limit` events, ascending. O(result).
    pub fn recent(&self, limit: usize) -> &[Arc<ProcessEvent>] {
        let events = &self.stored.events;
        &events[events.len().saturating_sub(limit)..]
    }

    /// Events of `event_type` with sequence <= `up_to`. O(log n).
    pub fn count_through(&self, event_type: &str, up_to: u64) -> u64 {
        self.log
            .by_type
            .get(event_type)
            .map_or(0, |sequences| sequences.partition_point(|&sequence| sequence <= up_to) as u64)
    }

    /// The first event of `event_type` after `after`. O(log n).
    pub fn first_of_type_after(&self, event_type: &str, after: u64) -> Option<&Arc<ProcessEvent>> {
        let sequences = self.log.by_type.get(event_type)?;
        let index = sequences.partition_point(|&sequence| sequence <= after);
        sequences.get(index).and_then(|&sequence| self.event(sequence))
    }

    /// Unacked wake events after `after`, ascending. O(wakes after `after`).
    pub fn wake_events_after(&self, after: u64) -> Vec<Arc<ProcessEvent>> {
        let start = self.log.wakes.partition_point(|&sequence| sequence <= after);
        self.log.wakes[start..]
            .iter()
            .filter(|sequence| !self.stored.acked.contains(sequence))
            .filter_map(|&sequence| self.event(sequence).cloned())
            .collect()
    }

    /// The replay entry of `key`.
    pub fn replay_entry(&self, key: &str) -> Option<&ReplayEntry> {
        self.stored.replay.get(key)
    }

    /// True when the wake of `sequence` was acked.
    pub fn is_acked(&self, sequence: u64) -> bool {
        self.stored.acked.contains(&sequence)
    }

    /// The lease state.
    pub fn lease(&self) -> &LeaseState {
        &self.stored.lease
    }
}
