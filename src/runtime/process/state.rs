//! A process actor's working state: what the store keeps of the process,
//! plus indexes derived from it, plus where durability has reached.
//!
//! [`ProcessState`] owns one [`IndexedProcess`]: a [`StoredProcess`] and
//! the read indexes over its log, which make every read O(result) or
//! O(log n). Both move only by the [`ProcessChange`]s the actor commits, so
//! the indexes can never disagree with the log.
//!
//! A change is applied in two steps. [`ProcessState::plan`] applies it as
//! soon as the store has accepted it, so the next call is planned on top of
//! it (pipelining: a durable store may still be writing it).
//! [`ProcessState::make_durable`] moves the [`Durable`] watermark over it
//! once the store says it is durable. Every read answers from the durable
//! part only ([`ProcessState::committed`]), so nothing that could still be
//! lost is ever seen; if the store fails a commit,
//! [`ProcessState::roll_back`] returns the planned state to the durable one.

use std::sync::Arc;

use crate::events::ProcessEvent;
use crate::model::ProcessRecord;
use crate::rules::append::ReplayEntry;
use crate::rules::lease::LeaseState;
use crate::store::{CommittedView, IndexedProcess, ProcessChange, StoredProcess};

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
    indexed: IndexedProcess,
    durable: Durable,
}

impl ProcessState {
    /// Builds the indexes over a stored process, all of it durable. O(events).
    pub fn from_stored(stored: StoredProcess) -> Self {
        let durable = Durable {
            sequence: stored.last_sequence(),
            record: Arc::clone(&stored.record),
            lease: stored.lease.clone(),
            pending_acks: Vec::new(),
        };
        Self { indexed: IndexedProcess::new(stored), durable }
    }

    fn stored(&self) -> &StoredProcess {
        &self.indexed.stored
    }

    /// The record as planned (what the next call is planned against).
    pub fn record(&self) -> &Arc<ProcessRecord> {
        &self.stored().record
    }

    /// The last durable record.
    pub fn durable_record(&self) -> &Arc<ProcessRecord> {
        &self.durable.record
    }

    /// Applies a change the store accepted: later calls are planned on it.
    pub fn plan(&mut self, change: &ProcessChange) {
        if let ProcessChange::WakeAcked { sequence } = change {
            self.durable.pending_acks.push(*sequence);
        }
        self.indexed.apply(change);
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
        self.indexed.truncate(self.durable.sequence);
        let stored = &mut self.indexed.stored;
        for sequence in self.durable.pending_acks.drain(..) {
            stored.acked.remove(&sequence);
        }
        stored.record = Arc::clone(&self.durable.record);
        stored.lease = self.durable.lease.clone();
    }

    /// The last planned sequence (0 for an empty log).
    pub fn last_sequence(&self) -> u64 {
        self.stored().last_sequence()
    }

    /// The planned event with `sequence`.
    pub fn event(&self, sequence: u64) -> Option<&Arc<ProcessEvent>> {
        let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.stored().events.get(index)
    }

    /// What every read answers from: the durable part.
    pub fn committed(&self) -> CommittedView<'_> {
        self.indexed.view(self.durable.sequence, &self.durable.pending_acks)
    }

    /// The planned replay entry of `key`.
    pub fn replay_entry(&self, key: &str) -> Option<&ReplayEntry> {
        self.stored().replay.get(key)
    }

    /// True when the wake of `sequence` was acked (planned).
    pub fn is_acked(&self, sequence: u64) -> bool {
        self.stored().acked.contains(&sequence)
    }

    /// The planned lease state.
    pub fn lease(&self) -> &LeaseState {
        &self.stored().lease
    }
}
