//! The default store: committed state in memory.
//!
//! [`MemoryStore`] keeps each process's [`StoredProcess`] in a concurrent
//! map, sharing events with the actors (`Arc<ProcessEvent>`), so a process
//! actor that panics is restarted with everything it had committed. It
//! reports [`DurabilityTier::Inline`]: nothing survives the OS process.
//! Grants live in the supervisor, which outlives every process actor, so
//! this store has nothing to do for them.

use async_trait::async_trait;
use dashmap::DashMap;

use super::{GrantChange, ProcessChange, ProcessStore, Recovered, StoredProcess};
use crate::error::RegistryError;
use crate::model::DurabilityTier;

/// Committed state in memory; the default store.
///
/// Values are boxed: a hash table keeps spare buckets (up to half of them
/// right after it grows), and a spare bucket of a pointer costs 8 bytes
/// where one of a whole `StoredProcess` would cost a hundred.
#[derive(Debug, Default)]
pub struct MemoryStore {
    processes: DashMap<Box<str>, Box<StoredProcess>>,
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

#[async_trait]
impl ProcessStore for MemoryStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Inline
    }

    async fn recover(&self) -> Result<Recovered, RegistryError> {
        Ok(Recovered {
            processes: self.processes.iter().map(|entry| StoredProcess::clone(entry.value())).collect(),
            grants: Vec::new(),
        })
    }

    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
        Ok(self.processes.get(process_id).map(|entry| StoredProcess::clone(entry.value())))
    }

    async fn commit_process(&self, process_id: &str, change: &ProcessChange) -> Result<(), RegistryError> {
        match change {
            ProcessChange::Registered { record } => {
                self.processes.insert(process_id.into(), Box::new(StoredProcess::new(record.clone())));
            }
            other => match self.processes.get_mut(process_id) {
                Some(mut stored) => stored.apply(other),
                None => {
                    return Err(RegistryError::Storage {
                        process_id: process_id.to_owned(),
                        message: "change for a process the store does not hold".to_owned(),
                    })
                }
            },
        }
        Ok(())
    }

    async fn commit_grant(&self, _change: &GrantChange) -> Result<(), RegistryError> {
        Ok(())
    }
}
