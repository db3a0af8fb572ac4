//! Ordered indexes of process ids by status, behind the listings.
//!
//! The routing table is a hash map, in no order. Listing from it meant
//! visiting and sorting every record, under the map's shard locks, for a
//! worklist of a thousand running processes among a million. So the
//! routing table also keeps one ordered set of ids per status:
//!
//! - the supervisor inserts a process into `running` (or its status's set,
//!   on recovery) when it registers it, before it replies;
//! - a process's actor moves it into its terminal status's set when it
//!   commits the terminal event, before it replies: first inserted there,
//!   then removed from `running`, so a listing of every status never finds
//!   it in neither.
//!
//! Each entry maps the id to the record snapshot the process's actor
//! publishes (the one the routing table holds), so a listing reads records
//! straight from the index. It copies the entries of the sets it needs,
//! [`CHUNK`] at a time, each chunk under the set's mutex (a writer waits
//! for one chunk at most), then reads each record with no lock held. The
//! record decides: a listing filters on the record it read, so a process
//! that changed during the call is listed as it was or as it is, never
//! twice, and one that did not change is listed exactly as it is.
//!
//! Ids are the routing table's `Arc<str>` keys and snapshots its `Arc`s,
//! shared: an entry costs its 24 bytes in a B-tree node (plus the nodes'
//! spare room), no copy of anything.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::routes::RecordSnapshot;
use crate::events::ProcessTerminalState;
use crate::model::{ProcessStatus, ProcessStatusFilter};

/// How many entries a listing copies per lock of a set.
const CHUNK: usize = 1024;

/// One ordered set: id -> the record snapshot its actor publishes (the
/// routing table's own, so a listing needs no routing-table lookup).
#[derive(Debug, Default)]
struct IdSet(Mutex<BTreeMap<Arc<str>, Arc<RecordSnapshot>>>);

impl IdSet {
    /// The set. (Nothing that can panic runs under the lock, so a poisoned
    /// lock still holds a whole set.)
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Arc<str>, Arc<RecordSnapshot>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, id: Arc<str>, record: Arc<RecordSnapshot>) {
        self.lock().insert(id, record);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn get(&self, id: &str) -> Option<(Arc<str>, Arc<RecordSnapshot>)> {
        self.lock().get_key_value(id).map(|(id, record)| (Arc::clone(id), Arc::clone(record)))
    }

    /// Appends `copy(entry)` of every entry to `into`, ascending by id,
    /// `CHUNK` entries per lock. O(set + set/CHUNK * log set).
    fn copy_into<T>(&self, into: &mut Vec<T>, copy: impl Fn(&Arc<str>, &Arc<RecordSnapshot>) -> T) {
        let mut after: Option<Arc<str>> = None;
        loop {
            let set = self.lock();
            let mut entries = match &after {
                None => set.range::<str, _>((Bound::Unbounded, Bound::Unbounded)),
                Some(last) => set.range::<str, _>((Bound::Excluded(&**last), Bound::Unbounded)),
            };
            let mut copied = 0;
            for (id, record) in entries.by_ref().take(CHUNK) {
                into.push(copy(id, record));
                copied += 1;
                if copied == CHUNK {
                    after = Some(Arc::clone(id));
                }
            }
            if copied < CHUNK {
                return;
            }
        }
    }
}

/// The ordered sets of ids, one per status.
#[derive(Debug, Default)]
pub(crate) struct StatusIndex {
    running: IdSet,
    completed: IdSet,
    failed: IdSet,
    cancelled: IdSet,
}

impl StatusIndex {
    fn of_terminal(&self, state: ProcessTerminalState) -> &IdSet {
        match state {
            ProcessTerminalState::Completed => &self.completed,
            ProcessTerminalState::Failed => &self.failed,
            ProcessTerminalState::Cancelled => &self.cancelled,
        }
    }

    fn of_filter(&self, status: ProcessStatusFilter) -> Option<&IdSet> {
        match status {
            ProcessStatusFilter::Running => Some(&self.running),
            ProcessStatusFilter::Completed => Some(&self.completed),
            ProcessStatusFilter::Failed => Some(&self.failed),
            ProcessStatusFilter::Cancelled => Some(&self.cancelled),
            ProcessStatusFilter::Any => None,
        }
    }

    /// Adds a process in `status`. O(log n) under one set's lock.
    pub(crate) fn insert(&self, id: Arc<str>, record: Arc<RecordSnapshot>, status: &ProcessStatus) {
        let set = match status {
            ProcessStatus::Running => &self.running,
            ProcessStatus::Completed { .. } => &self.completed,
            ProcessStatus::Failed { .. } => &self.failed,
            ProcessStatus::Cancelled { .. } => &self.cancelled,
        };
        set.insert(id, record);
    }

    /// Moves a running process to the set of `state`: inserted there before
    /// it leaves `running`. O(log n) under each set's lock in turn.
    /// Moves `id` from `running` to `state`'s set; whether it moved (false
    /// when it was not running: moved already, or unknown).
    pub(crate) fn terminal_committed(&self, id: &str, state: ProcessTerminalState) -> bool {
        let Some((id, record)) = self.running.get(id) else {
            return false;
        };
        self.of_terminal(state).insert(Arc::clone(&id), record);
        self.running.remove(&id);
        true
    }

    /// The record snapshots a listing with `status` visits, ascending by
    /// id, each once. O(entries returned): one set for a status, all four
    /// for `Any`.
    pub(crate) fn snapshots(&self, status: ProcessStatusFilter) -> Vec<Arc<RecordSnapshot>> {
        let mut snapshots = Vec::new();
        if let Some(set) = self.of_filter(status) {
            set.copy_into(&mut snapshots, |_, record| Arc::clone(record));
            return snapshots;
        }
        // `running` first: a process that leaves it during the copy was in
        // its terminal set before, which is copied after.
        let mut entries = Vec::new();
        let pair = |id: &Arc<str>, record: &Arc<RecordSnapshot>| (Arc::clone(id), Arc::clone(record));
        for set in [&self.running, &self.completed, &self.failed, &self.cancelled] {
            set.copy_into(&mut entries, pair);
        }
        // Four ascending runs: the stable sort merges them in O(n log 4).
        // A process that moved is in two: keep one.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        snapshots.extend(entries.into_iter().map(|(_, record)| record));
        snapshots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ProcessInput, ProcessRegistration};
    use crate::rules::limits::Limits;
    use crate::rules::registration::prepare_registration;
    use crate::rules::schema::CompileEach;

    fn snapshot(id: &str) -> Arc<RecordSnapshot> {
        let registration = ProcessRegistration::new(id, ProcessInput::definition("job", Default::default()));
        let prepared = prepare_registration(registration, &Limits::default(), &CompileEach).unwrap();
        Arc::new(RecordSnapshot::new(Arc::new(prepared.new_record(0))))
    }

    fn insert(index: &StatusIndex, id: &str) {
        index.insert(Arc::from(id), snapshot(id), &ProcessStatus::Running);
    }

    fn ids(index: &StatusIndex, status: ProcessStatusFilter) -> Vec<String> {
        index.snapshots(status).iter().map(|snapshot| snapshot.load().id.clone()).collect()
    }

    #[test]
    fn listings_are_ascending_across_chunks_and_follow_terminal_moves() {
        let index = StatusIndex::default();
        let count = CHUNK * 2 + 7;
        for n in (0..count).rev() {
            insert(&index, &format!("p{n:05}"));
        }
        let all: Vec<String> = (0..count).map(|n| format!("p{n:05}")).collect();
        assert_eq!(ids(&index, ProcessStatusFilter::Running), all);
        assert!(ids(&index, ProcessStatusFilter::Completed).is_empty());

        index.terminal_committed("p00003", ProcessTerminalState::Completed);
        index.terminal_committed("p01500", ProcessTerminalState::Failed);
        index.terminal_committed("p01500", ProcessTerminalState::Cancelled);
        index.terminal_committed("unknown", ProcessTerminalState::Completed);
        assert_eq!(ids(&index, ProcessStatusFilter::Completed), vec!["p00003".to_owned()]);
        assert_eq!(ids(&index, ProcessStatusFilter::Failed), vec!["p01500".to_owned()]);
        assert!(ids(&index, ProcessStatusFilter::Cancelled).is_empty(), "a terminal process moves once");
        let running = ids(&index, ProcessStatusFilter::Running);
        assert_eq!(running.len(), count - 2);
        assert!(!running.contains(&"p00003".to_owned()));
        assert_eq!(ids(&index, ProcessStatusFilter::Any), all, "every status, merged in order");
    }

    #[test]
    fn a_chunk_boundary_on_the_last_id_ends_the_copy() {
        let index = StatusIndex::default();
        for n in 0..CHUNK {
            insert(&index, &format!("p{n:05}"));
        }
        assert_eq!(index.snapshots(ProcessStatusFilter::Running).len(), CHUNK);
    }
}
