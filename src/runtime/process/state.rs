//! A process actor's working state: what the store keeps of the process,
//! plus indexes derived from it.
//!
//! [`ProcessState`] owns one [`StoredProcess`] and an [`EventIndex`] over
//! its log (sequences by event type, wake sequences), which make every read
//! O(result) or O(log n). Both move only by the [`ProcessChange`]s the
//! actor commits, so the indexes can never disagree with the log.

use std::collections::HashMap;
use std::sync::Arc;

use crate::events::ProcessEvent;
use crate::model::ProcessRecord;
use crate::rules::append::ReplayEntry;
use crate::rules::lease::LeaseState;
use crate::store::{ProcessChange, StoredProcess};

/// Read indexes over an event log.
#[derive(Clone, Debug, Default)]
pub(crate) struct EventIndex {
    /// Sequences of each event type, ascending.
    by_type: HashMap<String, Vec<u64>>,
    /// Sequences of events that materialized a wake, ascending.
    wakes: Vec<u64>,
}

impl EventIndex {
    fn add(&mut self, event: &ProcessEvent) {
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
pub(crate) struct ProcessState {
    stored: StoredProcess,
    index: EventIndex,
}

impl ProcessState {
    /// Builds the indexes over a stored process. O(events).
    pub fn from_stored(stored: StoredProcess) -> Self {
        let mut index = EventIndex::default();
        for event in &stored.events {
            index.add(event);
        }
        Self { stored, index }
    }

    /// The current record.
    pub fn record(&self) -> &Arc<ProcessRecord> {
        &self.stored.record
    }

    /// Applies one change to the stored part and the indexes.
    pub fn apply(&mut self, change: &ProcessChange) {
        if let ProcessChange::Appended { event, .. } = change {
            self.index.add(event);
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
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        self.stored.events.get(start..).unwrap_or_default()
    }

    /// The last `limit` events, ascending. O(result).
    pub fn recent(&self, limit: usize) -> &[Arc<ProcessEvent>] {
        let events = &self.stored.events;
        events.get(events.len().saturating_sub(limit)..).unwrap_or_default()
    }

    /// Events of `event_type` with sequence <= `up_to`. O(log n).
    pub fn count_through(&self, event_type: &str, up_to: u64) -> u64 {
        self.index
            .by_type
            .get(event_type)
            .map_or(0, |sequences| sequences.partition_point(|&sequence| sequence <= up_to) as u64)
    }

    /// The first event of `event_type` after `after`. O(log n).
    pub fn first_of_type_after(&self, event_type: &str, after: u64) -> Option<&Arc<ProcessEvent>> {
        let sequences = self.index.by_type.get(event_type)?;
        let index = sequences.partition_point(|&sequence| sequence <= after);
        sequences.get(index).and_then(|&sequence| self.event(sequence))
    }

    /// Unacked wake events after `after`, ascending. O(wakes after `after`).
    pub fn wake_events_after(&self, after: u64) -> Vec<Arc<ProcessEvent>> {
        let start = self.index.wakes.partition_point(|&sequence| sequence <= after);
        self.index
            .wakes
            .get(start..)
            .unwrap_or_default()
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
