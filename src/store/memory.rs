//! The default store: committed state in memory.
//!
//! [`MemoryStore`] keeps each process's [`StoredProcess`] in a concurrent
//! map, sharing events with the actors (`Arc<ProcessEvent>`), so a process
//! actor that panics is restarted with everything it had committed. It
//! reports [`DurabilityTier::Inline`]: nothing survives the OS process.
//! Every commit is answered inside `submit`.
//!
//! It also keeps the read indexes over each log (`IndexedProcess`), so
//! that reads of committed state are answered in the caller's thread
//! ([`ProcessStore::read_inline`]) with no message to the process's actor,
//! whether that actor runs or not. The process actor stays the only
//! writer: it commits here before it replies, so a read that starts after
//! a call returned sees that call's change. Grants live in the supervisor,
//! which outlives every process actor, so this store has nothing to do for
//! them.

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::{
    Commit, CommitCallback, CommitResult, Committed, CommittedView, IndexedProcess, InlineRead, ProcessChange,
    ProcessStore, Recovered, StoredProcess,
};
use crate::error::RegistryError;
use crate::model::DurabilityTier;

/// Committed state in memory; the default store.
///
/// Values are boxed: a hash table keeps spare buckets (up to half of them
/// right after it grows), and a spare bucket of a pointer costs 8 bytes
/// where one of a whole process would cost a hundred.
#[derive(Debug, Default)]
pub struct MemoryStore {
    processes: DashMap<Box<str>, Box<IndexedProcess>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored processes.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// True when no process is stored.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

impl MemoryStore {
    fn apply(&self, commit: Commit) -> CommitResult {
        match commit {
            Commit::Register { record } => match self.processes.entry(record.id.as_str().into()) {
                Entry::Occupied(existing) => {
                    Ok(Committed::AlreadyRegistered(Arc::clone(&existing.get().stored.record)))
                }
                Entry::Vacant(slot) => {
                    slot.insert(Box::new(IndexedProcess::new(StoredProcess::new(record))));
                    Ok(Committed::Done)
                }
            },
            Commit::Process { process_id, changes, .. } => self.apply_process(&process_id, &changes),
            // Grants live in the supervisor, which outlives every actor;
            // so do quarantines. Both end with the OS process.
            Commit::Grants { .. } | Commit::Quarantined { .. } | Commit::QuarantineReleased { .. } => {
                Ok(Committed::Done)
            }
        }
    }
}

impl MemoryStore {
    fn apply_process(&self, process_id: &str, changes: &[ProcessChange]) -> CommitResult {
        match self.processes.get_mut(process_id) {
            Some(mut stored) => {
                for change in changes {
                    stored.apply(change);
                }
                Ok(Committed::Done)
            }
            None => Err(RegistryError::Storage {
                process_id: process_id.to_owned(),
                message: "change for a process the store does not hold".to_owned(),
            }),
        }
    }
}

#[async_trait]
impl ProcessStore for MemoryStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Inline
    }

    async fn recover(&self) -> Result<Recovered, RegistryError> {
        Ok(Recovered {
            records: self.processes.iter().map(|entry| Arc::clone(&entry.value().stored.record)).collect(),
            grants: Vec::new(),
            quarantined: Vec::new(),
        })
    }

    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
        Ok(self.processes.get(process_id).map(|entry| StoredProcess::clone(&entry.value().stored)))
    }

    fn submit(&self, commit: Commit, _later: CommitCallback) -> Option<CommitResult> {
        Some(self.apply(commit))
    }

    fn commit_inline(&self, process_id: &str, changes: &[ProcessChange]) -> Option<CommitResult> {
        Some(self.apply_process(process_id, changes))
    }

    /// Holds the read lock of the map shard that holds `process_id` while
    /// `read` runs: commits to processes of the same shard wait that long.
    fn read_inline(&self, process_id: &str, read: &mut dyn FnMut(CommittedView<'_>)) -> InlineRead {
        match self.processes.get(process_id) {
            Some(entry) => {
                read(entry.value().committed());
                InlineRead::Read
            }
            None => InlineRead::NotHeld,
        }
    }
}
