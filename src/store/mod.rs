//! Storage: the one seam between committed state and where it is kept.
//!
//! Every change is a [`Commit`] handed to [`ProcessStore::submit`]: a
//! registration (inserted only if the id is absent), the changes of one
//! process, or the changes of the grant index, each all or nothing. The
//! store answers when the commit is as durable as its
//! [`DurabilityTier`] says, and only then does the caller make it visible:
//! a process actor applies its [`ProcessChange`]s to the state it publishes
//! and answers its callers; the supervisor routes the new process or
//! updates its grant index. A commit the store refused is never applied,
//! so nothing in memory is ahead of the store, and a restarted actor
//! rebuilds exactly the committed state from [`ProcessStore::load_process`].
//!
//! Ownership: the store owns what is committed. Opening a registry reads
//! records and grants only ([`ProcessStore::recover`]); a process's log,
//! replay index, acks and lease are read when its actor activates and
//! dropped from memory when it passivates.
//!
//! - [`committed`]: what a store keeps of one process and the changes that move it.
//! - [`memory`]: the default in-memory store ([`DurabilityTier::Inline`]).
//! - [`sqlite`]: the embedded durable store ([`DurabilityTier::Durable`]),
//!   with group commit on one writer thread.
//! - `postgres` (feature `postgres`): the store several registry nodes
//!   share ([`DurabilityTier::Durable`], [`ProcessStore::shared`]), with
//!   group commit per node, version-fenced commits and LISTEN/NOTIFY.

pub mod committed;
pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::RegistryError;
use crate::model::{DurabilityTier, ProcessHandleDescriptor, ProcessRecord, SessionScope};

pub use crate::rules::append::ReplayEntry;
pub use crate::rules::lease::LeaseState;
pub(crate) use committed::IndexedProcess;
pub use committed::{CommittedView, ProcessChange, StoredProcess};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore, POSTGRES_SCHEMA_VERSION};
pub use sqlite::{CommitMode, SqliteOptions, SqliteStore, StoreFaults, StoreFaultsHandle, SyncMode};

/// A change to the session-grant index, for stores that persist grants.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GrantChange {
    /// A grant was added or its descriptor replaced.
    Granted {
        /// The scope holding the grant.
        scope: SessionScope,
        /// The granted process.
        process_id: String,
        /// Its descriptor.
        descriptor: ProcessHandleDescriptor,
    },
    /// A grant was removed.
    Revoked {
        /// The scope that held it.
        scope_id: String,
        /// The process it was for.
        process_id: String,
    },
}

/// One atomic unit of work for a store: all of it is committed, or none.
#[derive(Clone, Debug)]
pub enum Commit {
    /// A new process, inserted only if its id is absent.
    Register {
        /// Its record.
        record: Arc<ProcessRecord>,
    },
    /// Changes of one process, in order.
    Process {
        /// The process.
        process_id: String,
        /// The process's version the changes were planned on
        /// ([`StoredProcess::version`] plus the commits since). A
        /// [shared](ProcessStore::shared) store commits only if the process
        /// is still at this version and answers
        /// [`RegistryError::Contended`] otherwise; a store with one writer
        /// ignores it.
        base_version: u64,
        /// The plan these changes belong to: a number the process's actor
        /// takes when it starts and again each time it rolls back after a
        /// refused commit; numbers are unique in the OS process and rise. The
        /// commits an actor pipelines on top of each other share one plan.
        /// A store that pipelines commits and refuses one of them (a
        /// constraint) refuses every later commit of the process with the
        /// same plan or an older one: they were planned on the refused one,
        /// and their callers are told so by the rollback. A store that
        /// answers each commit before the next is planned may ignore it.
        plan: u64,
        /// Its changes.
        changes: Vec<ProcessChange>,
    },
    /// Changes of the grant index, in order (a transfer, a session deletion).
    Grants {
        /// The grant index's version the changes were planned on (see
        /// [`SharedStore::load_grants`]); ignored by a store with one writer.
        base_version: u64,
        /// The changes.
        changes: Vec<GrantChange>,
    },
    /// A process was quarantined, so that a reopened registry routes it as
    /// quarantined too. A store that ends with its OS process may answer
    /// `Done` and keep nothing.
    Quarantined {
        /// The process.
        process_id: String,
        /// Why (the last failure of its actor).
        reason: String,
        /// When, by the registry's clock.
        since_ms: u64,
    },
    /// A process's quarantine was lifted (nothing to do if it had none).
    QuarantineReleased {
        /// The process.
        process_id: String,
    },
}

/// What a successful commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Committed {
    /// Everything was recorded.
    Done,
    /// A [`Commit::Register`] found its id taken: nothing was recorded, and
    /// this is the record the store holds.
    AlreadyRegistered(Arc<ProcessRecord>),
}

/// The answer to a commit.
pub type CommitResult = Result<Committed, RegistryError>;

/// Called once with the answer to a commit that did not finish inside
/// [`ProcessStore::submit`]; from any thread.
pub type CommitCallback = Box<dyn FnOnce(CommitResult) + Send>;

/// Everything a registry reads when it opens a store.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// Every committed process's record. Records with equal declarations
    /// should share one `event_types` list.
    pub records: Vec<Arc<ProcessRecord>>,
    /// Every grant, in commit order.
    pub grants: Vec<GrantChange>,
    /// The ids of the quarantined processes ([`Commit::Quarantined`]).
    pub quarantined: Vec<String>,
}

/// Where committed state is kept.
///
/// A store must answer a commit only once it is as durable as
/// [`Self::durability_tier`] says, must answer the commits of one submitter
/// in the order they were submitted, and must leave nothing of a commit it
/// refused. After a failed write whose outcome it cannot know (a failed
/// fsync), a store refuses every later commit until it is reopened.
#[async_trait]
pub trait ProcessStore: Send + Sync + std::fmt::Debug + 'static {
    /// What this store guarantees.
    fn durability_tier(&self) -> DurabilityTier;

    /// Every record and grant, read once when a registry starts (by the
    /// supervisor, before it answers any call). Event logs are not read.
    async fn recover(&self) -> Result<Recovered, RegistryError>;

    /// The committed state of one process, for starting its actor: it
    /// reflects every commit answered before the call. Called by the
    /// supervisor on activation and restart; it answers no other call until
    /// this returns, so it should cost O(the process's state).
    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError>;

    /// The committed state of a process whose registration this store has
    /// just answered with [`Committed::Done`], for starting its actor at
    /// once ([`RegistryConfig::ready_on_register`](crate::RegistryConfig::ready_on_register)):
    /// what [`Self::load_process`] would return, built from `record`
    /// without reading anything. Called by the supervisor, never for a
    /// store several registries share. A store that keeps the state of
    /// running processes for [`Self::read_inline`] starts keeping it here.
    /// The default is a fresh [`StoredProcess`] of `record`.
    fn load_registered(&self, record: Arc<ProcessRecord>) -> StoredProcess {
        StoredProcess::new(record)
    }

    /// Hands `commit` to the store. A store that commits inline returns
    /// `Some(answer)` and drops `later` uncalled; otherwise it returns
    /// `None` and calls `later` exactly once, when the commit is durable or
    /// has failed. Never blocks on I/O. The submitter makes the commit
    /// visible only after an `Ok` answer.
    fn submit(&self, commit: Commit, later: CommitCallback) -> Option<CommitResult>;

    /// The fast path of a store that commits the changes of one process
    /// inline: commits `changes` and answers, or `None` when this store
    /// does not commit inline (then the caller uses [`Self::submit`]).
    /// Called only when nothing of the process is in flight. The default
    /// is `None`.
    fn commit_inline(&self, process_id: &str, changes: &[ProcessChange]) -> Option<CommitResult> {
        let _ = (process_id, changes);
        None
    }

    /// Runs `read` over the committed state of `process_id` in the caller's
    /// thread, when this store keeps that state in memory: no I/O, no
    /// message, and no actor needed (a passive process stays passive).
    /// `read` runs under the store's lock for that process, so it should
    /// copy `Arc`s and nothing more; the caller deep-copies afterwards.
    ///
    /// The default is [`InlineRead::Unsupported`]: the registry asks the
    /// process's actor instead. Only stores in this crate can build a
    /// [`CommittedView`]; [`MemoryStore`] answers every read this way, and
    /// [`SqliteStore`] answers this way the reads of every process whose
    /// actor runs (it keeps their committed state from activation to
    /// passivation; see [`Self::release_process`]).
    fn read_inline(&self, process_id: &str, read: &mut dyn FnMut(CommittedView<'_>)) -> InlineRead {
        let _ = (process_id, read);
        InlineRead::Unsupported
    }

    /// The actor of `process_id` passivated with nothing in flight: a
    /// store that kept a copy of its committed state since
    /// [`Self::load_process`], to answer [`Self::read_inline`], may drop
    /// it now (its reads go to a new actor, which loads it again). Called
    /// before the process is routed passive, so no activation races it.
    /// The default does nothing.
    fn release_process(&self, process_id: &str) {
        let _ = process_id;
    }

    /// The store's view for several registry nodes writing one database
    /// ([`SharedStore`]), or `None` (the default) for a store this registry
    /// alone writes. With `Some`, every process actor checks the process's
    /// version against the store before it answers a call, reloads when
    /// another node moved it, and plans leases on the store's clock.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }

    /// Flushes what was submitted and releases the store (for SQLite:
    /// checkpoints the WAL and drops the file lock). Later commits are
    /// refused. Called by the registry's shutdown; idempotent.
    async fn close(&self) -> Result<(), RegistryError> {
        Ok(())
    }
}

/// What [`ProcessStore::read_inline`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InlineRead {
    /// The read ran over the committed state.
    Read,
    /// The store does not hold the process (the read did not run).
    NotHeld,
    /// This store does not answer this read inline (the read did not
    /// run): it keeps no committed state in memory, or not this process's
    /// now.
    Unsupported,
}

/// A process's version in a shared store, and the store's clock, read in
/// one round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The number of commits the process has had (0 when just registered).
    pub version: u64,
    /// The store server's clock, in ms since the Unix epoch.
    pub now_ms: u64,
}

/// A process's changes since a sequence, from [`SharedStore::load_changes`].
#[derive(Clone, Debug)]
pub struct Changes {
    /// The process's version.
    pub version: u64,
    /// Its last sequence.
    pub last_sequence: u64,
    /// The changes, in order.
    pub changes: Vec<ProcessChange>,
}

/// What a shared store tells a node about commits made elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// These processes changed (events appended, or registered).
    Changed(Vec<String>),
    /// The notice stream was interrupted and is back: anything may have
    /// changed meanwhile.
    Reconnected,
}

/// The reads a node needs when other nodes write the same store: each
/// answers with what the store holds now, committed by any node.
#[async_trait]
pub trait SharedStore: Send + Sync + std::fmt::Debug {
    /// The version of one process and the server's clock; `None` for an id
    /// the store does not hold.
    async fn probe(&self, process_id: &str) -> Result<Option<Probe>, RegistryError>;

    /// What the store holds of one process beyond sequence `after`, read
    /// in one snapshot: its version, its last sequence, and the changes
    /// that bring a copy holding the log up to `after` (and committed
    /// state as of some earlier version) up to the store's: one
    /// [`ProcessChange::Appended`] per newer event, then the record, the
    /// lease and every ack. `None` for an id the store does not hold.
    /// Costs O(the newer events), where a [`ProcessStore::load_process`]
    /// costs O(the whole log).
    async fn load_changes(&self, process_id: &str, after: u64) -> Result<Option<Changes>, RegistryError>;

    /// The records of `process_ids` that exist, in id order.
    async fn fetch_records(&self, process_ids: &[String]) -> Result<Vec<Arc<ProcessRecord>>, RegistryError>;

    /// Every record (`running_only`: of running processes only), in id order.
    async fn list_records(&self, running_only: bool) -> Result<Vec<Arc<ProcessRecord>>, RegistryError>;

    /// The grant index's version alone.
    async fn grants_version(&self) -> Result<u64, RegistryError>;

    /// The grant index's version and every grant.
    async fn load_grants(&self) -> Result<(u64, Vec<GrantChange>), RegistryError>;

    /// The stream of [`Notice`]s; called once, by the registry that opens
    /// the store.
    fn notices(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Notice>>;
}

/// Submits `commit` and waits for its answer; for callers that may wait
/// (the supervisor's grant changes, tests, tools).
pub async fn commit(store: &dyn ProcessStore, commit: Commit) -> CommitResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let later: CommitCallback = Box::new(move |answer| {
        // The waiter may have gone away; the commit stands regardless.
        let _ = tx.send(answer);
    });
    match store.submit(commit, later) {
        Some(answer) => answer,
        None => rx.await.unwrap_or_else(|_| {
            Err(RegistryError::Storage {
                process_id: String::new(),
                message: "the store dropped a commit without answering it".to_owned(),
            })
        }),
    }
}
