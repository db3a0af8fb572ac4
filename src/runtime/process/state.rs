//! A process actor's working state: what the store keeps of the process,
//! plus indexes derived from it, plus where durability has reached.
//!
//! [`ProcessState`] owns one [`StoredProcess`] and an [`EventIndex`] over
//! its log (sequences by event type, wake sequences), which make every read
//! O(result) or O(log n). Both move only by the [`ProcessChange`]s the
//! actor commits, so the indexes can never disagree with the log.
//!
//! A change is applied in two steps. [`ProcessState::plan`] applies it as
//! soon as the store has accepted it, so the next call is planned on top of
//! it (pipelining: a durable store may still be writing it).
//! [`ProcessState::make_durable`] moves the [`Durable`] watermark over it
//! once the store says it is durable. Every read answers from the durable
//! part only, so nothing that could still be lost is ever seen; if the
//! store fails a commit, [`ProcessState::roll_back`] returns the planned
//! state to the durable one.

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

    /// Forgets every sequence above `last`.
    fn truncate(&mut self, last: u64) {
        for sequences in self.by_type.values_mut() {
            sequences.truncate(sequences.partition_point(|&sequence| sequence <= last));
        }
        self.by_type.retain(|_, sequences| !sequences.is_empty());
        self.wakes.truncate(self.wakes.partition_point(|&sequence| sequence <= last));
    }
}

/// What is known to be durable: the part every read answers from.
#[derive(Clone, Debug)]
struct Durable {
    /// The last durable sequence.
    sequence: u64,
    /// The last durable record (also published as the snapshot).
    record: Arc<ProcessRecord>,
    /// The last durable lease state.
    lease: LeaseState,
    /// Acks planned but not durable yet (already in the stored ack set).
    pending_acks: Vec<u64>,
}

/// A process actor's working state: the stored part plus read indexes.
#[derive(Clone, Debug)]
pub(crate) struct ProcessState {
    stored: StoredProcess,
    index: EventIndex,
    durable: Durable,
}

impl ProcessState {
    /// Builds the indexes over a stored process, all of it durable. O(events).
    pub fn from_stored(stored: StoredProcess) -> Self {
        let mut index = EventIndex::default();
        for event in &stored.events {
            index.add(event);
        }
        let durable = Durable {
            sequence: stored.last_sequence(),
            record: Arc::clone(&stored.record),
            lease: stored.lease.clone(),
            pending_acks: Vec::new(),
        };
        Self { stored, index, durable }
    }

    /// The record as planned (what the next call is planned against).
    pub fn record(&self) -> &Arc<ProcessRecord> {
        &self.stored.record
    }

    /// The last durable record.
    pub fn durable_record(&self) -> &Arc<ProcessRecord> {
        &self.durable.record
    }

    /// Applies a change the store accepted: later calls are planned on it.
    pub fn plan(&mut self, change: &ProcessChange) {
        match change {
            ProcessChange::Appended { event, .. } => self.index.add(event),
            ProcessChange::WakeAcked { sequence } => self.durable.pending_acks.push(*sequence),
            ProcessChange::RecordUpdated { .. } | ProcessChange::LeaseUpdated { .. } => {}
        }
        self.stored.apply(change);
    }

    /// Moves the durable watermark over a planned change, in plan order.
    pub fn make_durable(&mut self, change: &ProcessChange) {
        match change {
            ProcessChange::Appended { event, record, .. } => {
                self.durable.sequence = event.sequence;
                self.durable.record = Arc::clone(record);
            }
            ProcessChange::RecordUpdated { record } => self.durable.record = Arc::clone(record),
            ProcessChange::WakeAcked { sequence } => {
                if let Some(at) = self.durable.pending_acks.iter().position(|pending| pending == sequence) {
                    self.durable.pending_acks.swap_remove(at);
                }
            }
            ProcessChange::LeaseUpdated { lease } => self.durable.lease = lease.clone(),
        }
    }

    /// Forgets every planned change that is not durable.
    pub fn roll_back(&mut self) {
        let last = self.durable.sequence;
        let keep = usize::try_from(last).unwrap_or(usize::MAX);
        self.stored.events.truncate(keep);
        self.index.truncate(last);
        self.stored.replay.retain(|_, entry| entry.sequence <= last);
        for sequence in self.durable.pending_acks.drain(..) {
            self.stored.acked.remove(&sequence);
        }
        self.stored.record = Arc::clone(&self.durable.record);
        self.stored.lease = self.durable.lease.clone();
    }

    /// The last planned sequence (0 for an empty log).
    pub fn last_sequence(&self) -> u64 {
        self.stored.last_sequence()
    }

    /// The planned event with `sequence`.
    pub fn event(&self, sequence: u64) -> Option<&Arc<ProcessEvent>> {
        let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.stored.events.get(index)
    }

    /// The durable events.
    fn durable_events(&self) -> &[Arc<ProcessEvent>] {
        let durable = usize::try_from(self.durable.sequence).unwrap_or(usize::MAX);
        self.stored.events.get(..durable).unwrap_or(&self.stored.events)
    }

    /// Durable events after `after`, ascending. O(result).
    pub fn events_after(&self, after: u64) -> &[Arc<ProcessEvent>] {
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        self.durable_events().get(start..).unwrap_or_default()
    }

    /// The last `limit` durable events, ascending. O(result).
    pub fn recent(&self, limit: usize) -> &[Arc<ProcessEvent>] {
        let events = self.durable_events();
        events.get(events.len().saturating_sub(limit)..).unwrap_or_default()
    }

    /// Durable events of `event_type` with sequence <= `up_to`. O(log n).
    pub fn count_through(&self, event_type: &str, up_to: u64) -> u64 {
        let up_to = up_to.min(self.durable.sequence);
        self.index
            .by_type
            .get(event_type)
            .map_or(0, |sequences| sequences.partition_point(|&sequence| sequence <= up_to) as u64)
    }

    /// The first durable event of `event_type` after `after`. O(log n).
    pub fn first_of_type_after(&self, event_type: &str, after: u64) -> Option<&Arc<ProcessEvent>> {
        let sequences = self.index.by_type.get(event_type)?;
        let index = sequences.partition_point(|&sequence| sequence <= after);
        let sequence = *sequences.get(index)?;
        if sequence > self.durable.sequence {
            return None;
        }
        self.event(sequence)
    }

    /// Durable, durably unacked wake events after `after`, ascending.
    /// O(wakes after `after`).
    pub fn wake_events_after(&self, after: u64) -> Vec<Arc<ProcessEvent>> {
        let start = self.index.wakes.partition_point(|&sequence| sequence <= after);
        let end = self.index.wakes.partition_point(|&sequence| sequence <= self.durable.sequence);
        self.index
            .wakes
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .filter(|&sequence| !self.stored.acked.contains(sequence) || self.durable.pending_acks.contains(sequence))
            .filter_map(|&sequence| self.event(sequence).cloned())
            .collect()
    }

    /// The planned replay entry of `key`.
    pub fn replay_entry(&self, key: &str) -> Option<&ReplayEntry> {
        self.stored.replay.get(key)
    }

    /// True when the wake of `sequence` was acked (planned).
    pub fn is_acked(&self, sequence: u64) -> bool {
        self.stored.acked.contains(&sequence)
    }

    /// The planned lease state.
    pub fn lease(&self) -> &LeaseState {
        &self.stored.lease
    }
}
