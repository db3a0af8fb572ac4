//! The committed state of one process, and the changes that move it.
//!
//! [`StoredProcess`] is what a store keeps of a process. It moves only by
//! [`ProcessChange`]s, applied with infallible pushes and inserts, so
//! applying a change cannot fail half-way. The process actor keeps the same
//! stored part plus read indexes derived from it (its working state, in
//! the runtime), and moves both by the same changes.

use std::collections::{BTreeMap, BTreeSet};
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
