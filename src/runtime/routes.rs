//! The routing table: process id -> actor and published record.
//!
//! The supervisor is the only writer (it creates and restarts actors); the
//! facade reads it to send per-process calls straight to their actor, and
//! reads the published record snapshot for `get_process` and listings
//! without sending any message. Each process actor swaps its snapshot
//! before it replies, so a call that returned is visible to every later read.

use std::sync::Arc;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ractor::ActorRef;

use super::messages::ProcessMsg;
use crate::model::ProcessRecord;

/// One routed process.
#[derive(Clone, Debug)]
pub(crate) struct ProcessEntry {
    /// Its current actor (replaced on restart).
    pub(crate) actor: ActorRef<ProcessMsg>,
    /// The record its actor publishes.
    pub(crate) record: Arc<ArcSwap<ProcessRecord>>,
}

/// Process id -> entry.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    entries: DashMap<String, ProcessEntry>,
}

impl Routes {
    pub(crate) fn actor(&self, process_id: &str) -> Option<ActorRef<ProcessMsg>> {
        self.entries.get(process_id).map(|entry| entry.actor.clone())
    }

    pub(crate) fn record(&self, process_id: &str) -> Option<Arc<ProcessRecord>> {
        self.entries.get(process_id).map(|entry| entry.record.load_full())
    }

    pub(crate) fn snapshot_handle(&self, process_id: &str) -> Option<Arc<ArcSwap<ProcessRecord>>> {
        self.entries.get(process_id).map(|entry| Arc::clone(&entry.record))
    }

    pub(crate) fn contains(&self, process_id: &str) -> bool {
        self.entries.contains_key(process_id)
    }

    pub(crate) fn insert(&self, process_id: String, entry: ProcessEntry) {
        self.entries.insert(process_id, entry);
    }

    pub(crate) fn set_actor(&self, process_id: &str, actor: ActorRef<ProcessMsg>) {
        if let Some(mut entry) = self.entries.get_mut(process_id) {
            entry.actor = actor;
        }
    }

    /// Every record passing `keep`, by id ascending.
    pub(crate) fn records_where(&self, mut keep: impl FnMut(&ProcessRecord) -> bool) -> Vec<Arc<ProcessRecord>> {
        let mut records: Vec<Arc<ProcessRecord>> =
            self.entries.iter().map(|entry| entry.record.load_full()).filter(|record| keep(record)).collect();
        records.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        records
    }

    pub(crate) fn actors(&self) -> Vec<ActorRef<ProcessMsg>> {
        self.entries.iter().map(|entry| entry.actor.clone()).collect()
    }
}
