//! The routing table: process id -> actor slot and published record.
//!
//! The supervisor writes the slots (it activates, restarts and quarantines
//! actors); the one other writer is an actor marking its own slot passive
//! as it passivates. The facade reads them to send per-process calls
//! straight to their actor, and reads the published record snapshot for
//! `get_process` and listings without sending any message. Each process
//! actor swaps its snapshot before it replies, so a call that returned is
//! visible to every later read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use dashmap::DashMap;
use ractor::{ActorId, ActorRef};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::process::messages::ProcessMsg;
use super::status_index::StatusIndex;
use crate::error::RegistryError;
use crate::events::ProcessTerminalState;
use crate::model::{ProcessInput, ProcessRecord, ProcessStatusFilter};
use crate::store::{IndexedProcess, ProcessStore};

/// The record a process actor publishes: written only by that actor, before
/// it replies, and read by anyone without a message.
#[derive(Debug)]
pub(crate) struct RecordSnapshot(RwLock<Arc<ProcessRecord>>);

impl RecordSnapshot {
    pub(crate) fn new(record: Arc<ProcessRecord>) -> Self {
        Self(RwLock::new(record))
    }

    /// The current record. (The lock is never held across anything that
    /// can panic, so a poisoned lock still holds a whole record.)
    pub(crate) fn load(&self) -> Arc<ProcessRecord> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the record.
    pub(crate) fn publish(&self, record: Arc<ProcessRecord>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = record;
    }
}

/// A running process actor and the bound on its mailbox.
#[derive(Clone, Debug)]
pub(crate) struct ActiveProcess {
    pub(crate) actor: ActorRef<ProcessMsg>,
    pub(crate) mailbox: Arc<Mailbox>,
}

/// The bound on one actor's mailbox: one permit per call in flight
/// (parked waiters hold none), taken by the caller before it sends and
/// kept until it has its answer.
///
/// Passivation proves that no call is in flight by taking every permit,
/// then closes the semaphore. Between the two a caller finds no free
/// permit although the actor is idle; the `passivating` flag, set before
/// the permits are taken, tells such a caller that it is racing a
/// passivation (route again) and not a full mailbox (`Overloaded`).
#[derive(Debug)]
pub(crate) struct Mailbox {
    permits: Arc<Semaphore>,
    passivating: AtomicBool,
}

/// What a caller that wants a permit now may find.
pub(crate) enum TryPermit {
    /// A permit: send.
    Granted(OwnedSemaphorePermit),
    /// The actor passivated or is passivating: route the call again.
    Passivating,
    /// Every permit is held by a call in flight.
    Full,
}

impl Mailbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(capacity.max(1))), passivating: AtomicBool::new(false) }
    }

    /// Waits for a permit; `None` once the actor passivated.
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// A permit if one is free now. Never `Full` on an idle actor: a
    /// caller that finds every permit taken while passivation holds them
    /// sees the flag, which was set before they were taken (their taking
    /// is an acquire-release operation on the count this caller read).
    pub(crate) fn try_acquire(&self) -> TryPermit {
        match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => TryPermit::Granted(permit),
            Err(TryAcquireError::Closed) => TryPermit::Passivating,
            Err(TryAcquireError::NoPermits) if self.passivating.load(Ordering::SeqCst) => TryPermit::Passivating,
            Err(TryAcquireError::NoPermits) => TryPermit::Full,
        }
    }

    /// Closes the mailbox if no call is in flight (all `capacity` permits
    /// are free); true when it did. Once closed, every caller routes anew,
    /// so no call is ever sent to an actor that is going away.
    pub(crate) fn close_if_idle(&self, capacity: usize) -> bool {
        let capacity = u32::try_from(capacity.max(1)).unwrap_or(u32::MAX);
        self.passivating.store(true, Ordering::SeqCst);
        match self.permits.try_acquire_many(capacity) {
            Ok(all) => {
                all.forget();
                self.permits.close();
                true
            }
            Err(_) => {
                self.passivating.store(false, Ordering::SeqCst);
                false
            }
        }
    }
}

/// Where a process's calls go.
#[derive(Clone, Debug)]
pub(crate) enum Slot {
    /// An actor is running (shared: a slot is cloned on every call).
    Active(Arc<ActiveProcess>),
    /// No actor: the state is in the store; the next call activates one.
    Passive,
    /// Restarted too often: no actor, mutations and waits are refused, and
    /// reads are answered from a read-only view of the committed state.
    Quarantined(Arc<Quarantine>),
}

/// What a quarantined process keeps: a read-only view of its committed
/// state, loaded from the store by the first read that needs it (the
/// quarantine itself costs no I/O) and kept until the quarantine is
/// released. Nothing can change that state meanwhile, since no actor runs
/// (with a store several nodes share, others may: there it is loaded
/// afresh by every read).
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    committed: OnceCell<Arc<IndexedProcess>>,
}

impl Quarantine {
    /// The committed state. Waits on `store.load_process` the first time
    /// (concurrent first readers share one load); O(1) afterwards.
    pub(crate) async fn committed(
        &self,
        store: &dyn ProcessStore,
        process_id: &str,
    ) -> Result<Arc<IndexedProcess>, RegistryError> {
        let load = || async {
            let stored = store.load_process(process_id).await?.ok_or_else(|| RegistryError::Storage {
                process_id: process_id.to_owned(),
                message: "the store does not hold this quarantined process".to_owned(),
            })?;
            Ok::<_, RegistryError>(Arc::new(IndexedProcess::new(stored)))
        };
        if store.shared().is_some() {
            // A quarantine is this node's: other nodes still write the
            // process, so every read loads it as the database has it now.
            return load().await;
        }
        self.committed.get_or_try_init(load).await.map(Arc::clone)
    }
}

/// One routed process.
#[derive(Debug)]
pub(crate) struct ProcessEntry {
    pub(crate) slot: Slot,
    /// The record its actor publishes.
    pub(crate) record: Arc<RecordSnapshot>,
}

/// Process id -> entry, and the ids in order by status.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Keys are `Arc<str>`, 8 bytes smaller than `String` in every bucket
    /// and shared with the status index, which so keeps no copy of an id.
    entries: DashMap<Arc<str>, ProcessEntry>,
    /// Every id, ordered, in the set of its status.
    statuses: StatusIndex,
}

impl Routes {
    pub(crate) fn slot(&self, process_id: &str) -> Option<Slot> {
        self.entries.get(process_id).map(|entry| entry.slot.clone())
    }

    pub(crate) fn record(&self, process_id: &str) -> Option<Arc<ProcessRecord>> {
        self.entries.get(process_id).map(|entry| entry.record.load())
    }

    pub(crate) fn snapshot_handle(&self, process_id: &str) -> Option<Arc<RecordSnapshot>> {
        self.entries.get(process_id).map(|entry| Arc::clone(&entry.record))
    }

    /// Every running process actor (for a shared store's reconnect: each
    /// checks its process again). O(routed processes).
    pub(crate) fn active_actors(&self) -> Vec<ractor::ActorRef<super::process::messages::ProcessMsg>> {
        self.entries
            .iter()
            .filter_map(|entry| match &entry.slot {
                Slot::Active(active) => Some(active.actor.clone()),
                Slot::Passive | Slot::Quarantined(_) => None,
            })
            .collect()
    }

    pub(crate) fn contains(&self, process_id: &str) -> bool {
        self.entries.contains_key(process_id)
    }

    /// Routes a new process, in the status its record has. The entry goes
    /// in before the index, so every id a listing finds is routed.
    pub(crate) fn insert(&self, process_id: String, entry: ProcessEntry) {
        let id: Arc<str> = Arc::from(process_id);
        let record = Arc::clone(&entry.record);
        let status = record.load().status.clone();
        self.entries.insert(Arc::clone(&id), entry);
        self.statuses.insert(id, record, &status);
    }

    /// Moves the process to the index of its terminal status; its actor
    /// calls this after publishing the terminal record, before replying.
    /// Files the process under its terminal `state`, once; whether this
    /// call moved it (so the caller counts it once).
    pub(crate) fn terminal_committed(&self, process_id: &str, state: ProcessTerminalState) -> bool {
        self.statuses.terminal_committed(process_id, state)
    }

    pub(crate) fn set_slot(&self, process_id: &str, slot: Slot) {
        if let Some(mut entry) = self.entries.get_mut(process_id) {
            entry.slot = slot;
        }
    }

    /// Marks the process passive if `actor` is still its active actor
    /// (a newer actor may have replaced it already).
    pub(crate) fn passivate_if_current(&self, process_id: &str, actor: ActorId) {
        if let Some(mut entry) = self.entries.get_mut(process_id) {
            if matches!(&entry.slot, Slot::Active(active) if active.actor.get_id() == actor) {
                entry.slot = Slot::Passive;
            }
        }
    }

    /// Copies of the records of the processes the index holds under
    /// `status`, by id ascending, that pass `keep`. `keep` judges the record
    /// as read, so it must check the status itself (a process may have moved
    /// on since the index was copied).
    ///
    /// Costs O(processes in `status`), without a routing-table lookup; no
    /// lock is held while `keep` runs or while a record is copied. The copies
    /// are made [`READ_AHEAD`] records at a time, each batch read ahead
    /// first ([`read_ahead`]).
    pub(crate) fn listed(
        &self,
        status: ProcessStatusFilter,
        mut keep: impl FnMut(&ProcessRecord) -> bool,
    ) -> Vec<ProcessRecord> {
        let snapshots = self.statuses.snapshots(status);
        let mut copies = Vec::with_capacity(snapshots.len());
        let mut batch = Vec::with_capacity(READ_AHEAD);
        for snapshots in snapshots.chunks(READ_AHEAD) {
            batch.extend(snapshots.iter().map(|snapshot| snapshot.load()).filter(|record| keep(record)));
            read_ahead(&batch);
            copies.extend(batch.drain(..).map(|record| ProcessRecord::clone(&record)));
        }
        copies
    }
}

/// How many records a listing reads ahead before it copies them: enough
/// to keep the CPU's outstanding misses busy (16 left half the gain on the
/// table at a million processes, 64 gained nothing over 32).
const READ_AHEAD: usize = 32;

/// Reads the first byte of each separately allocated string of `records`
/// (and of the first key of a definition's arguments), and discards it.
///
/// A listing's records are scattered over the heap, each string in its own
/// allocation: at a million processes nearly every one is a cache (and
/// often a TLB) miss. A copy meets them one after another, each behind the
/// allocations of the last; these reads are independent of one another, so
/// the CPU has the misses of a whole batch in flight at once, and the
/// copies that follow find most of their sources in cache. It changes
/// nothing and costs a few loads per record. (JSON values nested deeper
/// are left to the copy.)
fn read_ahead(records: &[Arc<ProcessRecord>]) {
    fn first(text: &str) -> usize {
        text.as_bytes().first().map_or(0, |&byte| usize::from(byte))
    }
    let mut sum = 0usize;
    let mut read = |text: &str| sum = sum.wrapping_add(first(text));
    for record in records {
        read(&record.id);
        read(&record.registration_hash);
        read(&record.provenance.host_profile_id);
        if let ProcessInput::Definition { name, args } = &record.input {
            read(name);
            if let Some(key) = args.keys().next() {
                read(key);
            }
        }
        if let Some(env_ref) = &record.env_ref {
            read(env_ref);
        }
        if let Some(scope) = &record.wake_target {
            read(&scope.session_id);
        }
        if let Some(external) = &record.external_ref {
            read(&external.backend);
            read(&external.id);
        }
    }
    std::hint::black_box(sum);
}
