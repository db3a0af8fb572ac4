//! The committed state of one process, and the changes that move it.
//!
//! [`StoredProcess`] is what a store keeps of a process. It moves only by
//! [`ProcessChange`]s, applied with infallible pushes and inserts, so
//! applying a change cannot fail half-way. `IndexedProcess` adds the read
//! indexes derived from it (sequences by event type, wake sequences),
//! moved by the same changes; the process actor's working state and the
//! memory store each keep one. [`CommittedView`] answers every read of
//! committed state over one, in O(result) or O(log n), so the actor and a
//! caller reading the memory store directly give the same answers.

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
    /// How many commits the process has had, for stores several nodes
    /// share (0 in a store one registry writes alone).
    #[serde(default)]
    pub version: u64,
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
            version: 0,
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &ProcessChange) {
        match change {
            ProcessChange::RecordUpdated { record } => {
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
pub(crate) struct EventIndex {
    /// Sequences of each event type, ascending.
    by_type: HashMap<String, Vec<u64>>,
    /// Sequences of events that materialized a wake, ascending.
    wakes: Vec<u64>,
}

impl EventIndex {
    fn add(&mut self, event: &ProcessEvent) {
        self.add_sequences(&event.event_type, [event.sequence]);
        if event.is_wake() {
            self.wakes.push(event.sequence);
        }
    }

    /// Appends `sequences` to those of `event_type` (the type's name is
    /// copied only the first time it is seen).
    fn add_sequences(&mut self, event_type: &str, sequences: impl IntoIterator<Item = u64>) {
        match self.by_type.get_mut(event_type) {
            Some(known) => known.extend(sequences),
            None => {
                self.by_type.insert(event_type.to_owned(), sequences.into_iter().collect());
            }
        }
    }

    /// Indexes a whole log: one map lookup per run of events of one type
    /// (a log is mostly such runs), not one per event.
    fn of(events: &[Arc<ProcessEvent>]) -> Self {
        let mut index = Self::default();
        let mut rest = events;
        while let Some(first) = rest.first() {
            let run = rest.iter().take_while(|event| event.event_type == first.event_type).count();
            let (same, later) = rest.split_at(run);
            index.add_sequences(&first.event_type, same.iter().map(|event| event.sequence));
            index.wakes.extend(same.iter().filter(|event| event.is_wake()).map(|event| event.sequence));
            rest = later;
        }
        index
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

/// A stored process and the read indexes over its log.
#[derive(Clone, Debug)]
pub(crate) struct IndexedProcess {
    /// The stored part.
    pub(crate) stored: StoredProcess,
    index: EventIndex,
}

impl IndexedProcess {
    /// Builds the indexes over a stored process. O(events).
    pub(crate) fn new(stored: StoredProcess) -> Self {
        let index = EventIndex::of(&stored.events);
        Self { stored, index }
    }

    /// Applies one change to the stored part and the indexes.
    pub(crate) fn apply(&mut self, change: &ProcessChange) {
        if let ProcessChange::Appended { event, .. } = change {
            self.index.add(event);
        }
        self.stored.apply(change);
    }

    /// Forgets every event above `last` from the log, the indexes and the
    /// replay index (a rollback of planned, never-durable appends).
    pub(crate) fn truncate(&mut self, last: u64) {
        self.stored.events.truncate(usize::try_from(last).unwrap_or(usize::MAX));
        self.stored.replay.retain(|_, entry| entry.sequence <= last);
        self.index.truncate(last);
    }

    /// The view of the events up to `durable`, with the acks in
    /// `pending_acks` (planned, not durable yet) not counted as acked.
    pub(crate) fn view<'a>(&'a self, durable: u64, pending_acks: &'a [u64]) -> CommittedView<'a> {
        let events = &self.stored.events;
        let durable = usize::try_from(durable).unwrap_or(usize::MAX);
        CommittedView {
            events: events.get(..durable).unwrap_or(events),
            index: &self.index,
            acked: &self.stored.acked,
            pending_acks,
        }
    }

    /// The view of everything held (a store holds only what is committed).
    pub(crate) fn committed(&self) -> CommittedView<'_> {
        self.view(self.stored.last_sequence(), &[])
    }
}

/// The committed state of one process as reads see it: its durable log,
/// the indexes over it, and which wakes are durably acked.
///
/// Borrowed from whoever keeps the state (a process actor, or the memory
/// store under its map's read lock), so every answer is O(result) or
/// O(log n) and copies only `Arc`s; the caller deep-copies the events it
/// returns after letting the borrow go.
#[derive(Clone, Copy, Debug)]
pub struct CommittedView<'a> {
    /// The durable events; `events[i].sequence == i + 1`.
    events: &'a [Arc<ProcessEvent>],
    index: &'a EventIndex,
    acked: &'a BTreeSet<u64>,
    /// Sequences in `acked` whose ack is not durable yet.
    pending_acks: &'a [u64],
}

impl<'a> CommittedView<'a> {
    fn durable_sequence(&self) -> u64 {
        self.events.len() as u64
    }

    fn event(&self, sequence: u64) -> Option<&'a Arc<ProcessEvent>> {
        self.events.get(usize::try_from(sequence.checked_sub(1)?).ok()?)
    }

    /// Events after `after`, ascending. O(result).
    pub fn events_after(&self, after: u64) -> &'a [Arc<ProcessEvent>] {
        self.events.get(usize::try_from(after).unwrap_or(usize::MAX)..).unwrap_or_default()
    }

    /// The last `limit` events, ascending. O(result).
    pub fn recent(&self, limit: usize) -> &'a [Arc<ProcessEvent>] {
        self.events.get(self.events.len().saturating_sub(limit)..).unwrap_or_default()
    }

    /// Events of `event_type` with sequence <= `up_to`. O(log n).
    pub fn count_through(&self, event_type: &str, up_to: u64) -> u64 {
        let up_to = up_to.min(self.durable_sequence());
        self.index
            .by_type
            .get(event_type)
            .map_or(0, |sequences| sequences.partition_point(|&sequence| sequence <= up_to) as u64)
    }

    /// The first event of `event_type` after `after`. O(log n).
    pub fn first_of_type_after(&self, event_type: &str, after: u64) -> Option<&'a Arc<ProcessEvent>> {
        let sequences = self.index.by_type.get(event_type)?;
        let sequence = *sequences.get(sequences.partition_point(|&sequence| sequence <= after))?;
        self.event(sequence)
    }

    /// Unacked wake events after `after`, ascending. O(wakes after `after`).
    pub fn wake_events_after(&self, after: u64) -> Vec<Arc<ProcessEvent>> {
        let wakes = &self.index.wakes;
        let start = wakes.partition_point(|&sequence| sequence <= after);
        let end = wakes.partition_point(|&sequence| sequence <= self.durable_sequence());
        wakes
            .get(start..end)
            .unwrap_or_default()
            .iter()
            .filter(|&sequence| !self.acked.contains(sequence) || self.pending_acks.contains(sequence))
            .filter_map(|&sequence| self.event(sequence).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ProcessEventSemantics, ProcessWakeSemantics};

    fn event(sequence: u64, event_type: &str, wake: bool) -> Arc<ProcessEvent> {
        let wake = wake.then(|| ProcessWakeSemantics { input: "in".to_owned(), dedupe_key: format!("d{sequence}") });
        Arc::new(ProcessEvent {
            process_id: "p".to_owned(),
            sequence,
            event_type: event_type.to_owned(),
            payload: serde_json::json!({}),
            invocation: crate::rules::append::invocation("p", sequence, event_type, None),
            semantics: ProcessEventSemantics { terminal: None, wake },
            occurred_at_ms: 0,
        })
    }

    #[test]
    fn indexing_a_whole_log_by_runs_matches_indexing_it_event_by_event() {
        let types = ["a", "a", "b", "a", "c", "c", "c", "b", "a", "a"];
        let log: Vec<_> =
            types.iter().enumerate().map(|(i, ty)| event(i as u64 + 1, ty, i % 3 == 0 || *ty == "c")).collect();
        let mut one_by_one = EventIndex::default();
        for event in &log {
            one_by_one.add(event);
        }
        let by_runs = EventIndex::of(&log);
        assert_eq!(by_runs.by_type, one_by_one.by_type);
        assert_eq!(by_runs.by_type["a"], vec![1, 2, 4, 9, 10]);
        assert_eq!(by_runs.wakes, one_by_one.wakes);
        assert_eq!(by_runs.wakes, vec![1, 4, 5, 6, 7, 10]);
        assert!(EventIndex::of(&[]).by_type.is_empty());
    }
}
