//! The embedded durable store: one SQLite file, group commit, crash-safe by
//! default.
//!
//! # What each sync mode survives
//!
//! - [`SyncMode::Full`] (default): every commit is fsynced (WAL with
//!   `synchronous = FULL`) before any caller it answers is answered. An
//!   answered call survives a killed process, a kernel panic and a power
//!   loss. The store reports [`DurabilityTier::Durable`].
//! - [`SyncMode::Normal`]: the WAL is fsynced at checkpoints only. An
//!   answered call survives a killed process (the OS holds the page cache),
//!   but the last commits before a power loss or a kernel panic may be
//!   lost (the file stays consistent). The store reports
//!   [`DurabilityTier::Inline`], since it does not keep the durable promise.
//!
//! # Who owns what
//!
//! - The **writer thread** owns the write connection and drains a queue of
//!   commits from every process actor and the supervisor, many per
//!   transaction and one fsync per transaction (`writer`). A failed commit
//!   poisons the store: every later commit is refused until reopen, and
//!   the processes of the failed batch are not loaded again either (the
//!   file may hold what their callers were told failed): reads of their
//!   running actors keep working, an activation of one is `Storage`.
//! - A **read connection** serves `recover` (records and grants, at open)
//!   and `load_process` (one process's log, at activation), on tokio's
//!   blocking pool so no worker blocks on the disk; it first waits for the
//!   writer to flush what was submitted before, so it never reads behind a
//!   commit that was answered.
//! - The **resident map** holds the committed state of every process whose
//!   actor runs: `load_process` puts it there (and `load_registered`, for
//!   an actor started by its registration), the writer moves it by each
//!   commit once that commit is durable and before its submitter hears of
//!   it, and the actor's passivation drops it
//!   ([`ProcessStore::release_process`]). Reads of an active process
//!   (`events_after`, `recent_events`, `count_events_through`,
//!   `wake_events_after`) are answered from it in the caller's thread, as
//!   on the memory store: no disk, no message. A process's log is in
//!   memory only while its actor runs, so memory at rest does not grow
//!   with history.
//! - A **lock file** beside the database's real path (`PATH-lock`, symlinks
//!   resolved) is held exclusively while the store is open, so a second
//!   registry on the same file gets [`RegistryError::StoreLocked`] instead
//!   of forking the fencing tokens.
//!   Read-only inspectors ([`SqliteInspector`], which the
//!   `process-registry` CLI prints) open the database without it, and
//!   never write or checkpoint, so they may read while a registry holds
//!   the file.
//!
//! [`SqliteStore::close`] (called by the registry's shutdown) flushes the
//! queue, checkpoints and truncates the WAL, and releases the lock.

mod inspect;
pub(crate) mod rows;
mod schema;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use dashmap::DashMap;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use self::schema::Found;
use self::writer::Job;
use super::{
    Commit, CommitCallback, CommitResult, CommittedView, IndexedProcess, InlineRead, ProcessChange, ProcessStore,
    Recovered, StoredProcess,
};
use crate::error::RegistryError;
use crate::events::ProcessEventType;
use crate::model::{DurabilityTier, ProcessRecord};

pub use self::inspect::{ProcessDetail, ProcessSummary, SqliteInspector, StatusCounts, StoredGrant, StoredStatus};

/// The schema version this build reads and writes.
pub const SQLITE_SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// How a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync every commit: survives power loss (the default).
    #[default]
    Full,
    /// fsync at checkpoints only: survives a killed process, not a power loss.
    Normal,
}

/// How commits are grouped into transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitMode {
    /// Everything queued (up to `max_batch` commits) in one transaction
    /// and one fsync (the default, with a bound of 1,024).
    Grouped {
        /// The most commits in one transaction.
        max_batch: usize,
    },
    /// One transaction per commit, as a naive store writes: for comparison.
    PerCall,
}

impl Default for CommitMode {
    fn default() -> Self {
        Self::Grouped { max_batch: 1024 }
    }
}

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// When commits are fsynced.
    pub sync: SyncMode,
    /// How commits are grouped.
    pub commit: CommitMode,
    /// The size the WAL is truncated to after a checkpoint, in bytes.
    pub journal_size_limit: u64,
    /// Faults to inject (tests of failure handling only).
    pub faults: StoreFaultsHandle,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Full,
            commit: CommitMode::default(),
            journal_size_limit: 64 * 1024 * 1024,
            faults: StoreFaultsHandle::default(),
        }
    }
}

impl SqliteOptions {
    /// Sets the sync mode.
    #[must_use]
    pub fn with_sync(mut self, sync: SyncMode) -> Self {
        self.sync = sync;
        self
    }

    /// Sets the commit mode.
    #[must_use]
    pub fn with_commit(mut self, commit: CommitMode) -> Self {
        self.commit = commit;
        self
    }
}

/// Faults a test can inject into the writer: the next commit fails (it is
/// rolled back), or the next fsync fails (the commit reached SQLite but its
/// outcome on disk is unknown). Either poisons the store.
#[derive(Debug, Default)]
pub struct StoreFaults {
    fail_commit: AtomicBool,
    fail_sync: AtomicBool,
    refuse_change: AtomicBool,
}

impl StoreFaults {
    /// Makes the next group commit fail before `COMMIT`.
    pub fn fail_next_commit(&self) {
        self.fail_commit.store(true, Ordering::Release);
    }

    /// Makes the next group commit report a failed fsync after `COMMIT`.
    pub fn fail_next_sync(&self) {
        self.fail_sync.store(true, Ordering::Release);
    }

    /// Makes the next commit of a process's changes fail as a constraint
    /// would refuse it: that commit, and every commit its actor planned on
    /// top of it, fails alone; the store stays writable.
    pub fn refuse_next_change(&self) {
        self.refuse_change.store(true, Ordering::Release);
    }
}

/// A shared handle on [`StoreFaults`]; without the `fault-injection`
/// feature it never injects anything.
#[derive(Clone, Debug, Default)]
pub struct StoreFaultsHandle(Arc<StoreFaults>);

impl StoreFaultsHandle {
    /// The faults to arm.
    #[cfg(feature = "fault-injection")]
    pub fn faults(&self) -> &StoreFaults {
        &self.0
    }

    fn take_commit_failure(&self) -> bool {
        cfg!(feature = "fault-injection") && self.0.fail_commit.swap(false, Ordering::AcqRel)
    }

    fn take_sync_failure(&self) -> bool {
        cfg!(feature = "fault-injection") && self.0.fail_sync.swap(false, Ordering::AcqRel)
    }

    fn take_change_refusal(&self) -> bool {
        cfg!(feature = "fault-injection") && self.0.refuse_change.swap(false, Ordering::AcqRel)
    }
}

/// What the store and its writer share.
#[derive(Debug)]
struct Shared {
    path: String,
    max_batch: usize,
    /// A commit failed: every later one is refused until reopen.
    poisoned: AtomicBool,
    /// Transactions committed (for figures: commits per fsync).
    batches: AtomicU64,
    /// The committed state of every process whose actor runs (boxed, as
    /// in the memory store, so spare buckets stay small).
    resident: DashMap<Box<str>, Box<IndexedProcess>>,
    /// Processes with a commit in a batch that failed: whether the file
    /// holds it is unknown (a failed fsync after `COMMIT` leaves it
    /// there), and its callers were told it failed, so none of them is
    /// loaded again until the store is reopened.
    unknown: Mutex<HashSet<String>>,
}

impl Shared {
    fn storage(&self, message: String) -> RegistryError {
        RegistryError::Storage { process_id: String::new(), message: format!("{}: {message}", self.path) }
    }

    /// A read at open failed: the file cannot be opened as a store.
    fn unreadable(&self, message: String) -> RegistryError {
        RegistryError::StoreOpen { path: self.path.clone(), message }
    }

    fn refused(&self) -> RegistryError {
        self.storage("the store refuses writes after a failed commit; reopen it".to_owned())
    }

    /// Keeps a copy of `stored` resident, for inline reads.
    fn hold_resident(&self, stored: &StoredProcess) {
        let held = Box::new(IndexedProcess::new(stored.clone()));
        self.resident.insert(stored.record.id.as_str().into(), held);
    }

    /// Moves the resident copy of `process_id`, if there is one, by a
    /// commit that is durable. Called by the writer before it answers.
    fn keep_resident(&self, process_id: &str, changes: &[ProcessChange]) {
        if let Some(mut held) = self.resident.get_mut(process_id) {
            for change in changes {
                held.apply(change);
            }
        }
    }
}

/// Committed state in one SQLite file. See the module docs for what it
/// guarantees and who owns what.
#[derive(Debug)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    sync: SyncMode,
    jobs: Mutex<Option<Sender<Job>>>,
    reader: Arc<Mutex<Reader>>,
    lock: Mutex<Option<File>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The read connection and the declarations it has seen.
#[derive(Debug)]
struct Reader {
    connection: Connection,
    declarations: HashMap<String, Arc<Vec<ProcessEventType>>>,
}

impl SqliteStore {
    /// Opens (creating if absent) the store at `path`, exclusively.
    ///
    /// Blocks the calling thread on the disk (call it from a blocking
    /// context or accept a short stall: it reads nothing but the header).
    /// Errors: [`RegistryError::StoreLocked`] when another registry holds
    /// the file (under any path that resolves to it; a hard link is not
    /// detected), [`RegistryError::StoreVersion`] for another schema version
    /// or an early version 1 layout (the file is not touched), [`RegistryError::StoreOpen`] for a file
    /// that is not a database, is truncated or cannot be written, and for
    /// a directory. A file whose header is intact but whose tables cannot
    /// be read opens here and fails [`ProcessStore::recover`] with
    /// `StoreOpen`, which is what
    /// [`ActorProcessRegistry::open`](crate::ActorProcessRegistry::open)
    /// then reports.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let open_error = |message: String| RegistryError::StoreOpen { path: shown.clone(), message };
        // Before the lock: a directory would get a stray `-lock` beside it
        // and SQLite's vague "unable to open database file".
        if path.is_dir() {
            return Err(open_error("it is a directory, not a store file".to_owned()));
        }
        let lock = take_lock(path)?;
        // The version is read first on a connection that cannot write or
        // checkpoint: closing the read-write one below could checkpoint a
        // WAL a newer build left behind into a file this build refuses.
        let probed = if path.metadata().is_ok_and(|metadata| metadata.len() > 0) {
            let probe =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .and_then(|probe| {
                        probe.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map(|_| probe)
                    })
                    .map_err(|error| open_error(error.to_string()))?;
            Some(refuse_unsupported(&probe, &shown)?)
        } else {
            None
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(error.to_string()))?;
        // SQLite opens a file it may not write read-only without a word;
        // every commit would fail later.
        let writable = || match connection.is_readonly(rusqlite::MAIN_DB) {
            Ok(false) => Ok(()),
            Ok(true) => Err(open_error("the file is not writable".to_owned())),
            Err(error) => Err(open_error(error.to_string())),
        };
        // The lock is held: nothing changed the file since the probe.
        let found = match probed {
            Some(found) => found,
            None => refuse_unsupported(&connection, &shown)?,
        };
        writable()?;
        schema::configure_writer(&connection, &options).map_err(|error| open_error(error.to_string()))?;
        match found {
            Found::Empty => schema::create(&connection),
            Found::Previous => schema::upgrade(&connection),
            // `Other` was refused above.
            Found::Current | Found::Other(_) => Ok(()),
        }
        .map_err(|error| open_error(error.to_string()))?;
        let reader =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|error| open_error(error.to_string()))?;
        let max_batch = match options.commit {
            CommitMode::Grouped { max_batch } => max_batch.max(1),
            CommitMode::PerCall => 1,
        };
        let shared = Arc::new(Shared {
            path: shown.clone(),
            max_batch,
            poisoned: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            resident: DashMap::new(),
            unknown: Mutex::new(HashSet::new()),
        });
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let shared = Arc::clone(&shared);
            let faults = options.faults.clone();
            std::thread::Builder::new()
                .name("process-registry-sqlite-writer".to_owned())
                .spawn(move || writer::run(connection, queue, shared, faults))
                .map_err(|error| open_error(format!("cannot start the writer thread: {error}")))?
        };
        Ok(Self {
            shared,
            sync: options.sync,
            jobs: Mutex::new(Some(jobs)),
            reader: Arc::new(Mutex::new(Reader { connection: reader, declarations: HashMap::new() })),
            lock: Mutex::new(Some(lock)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// True once a commit failed: the store refuses writes until reopened.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// Transactions committed since open: commits per fsync is the number
    /// of commits divided by this.
    pub fn transactions(&self) -> u64 {
        self.shared.batches.load(Ordering::Relaxed)
    }

    fn send(&self, job: Job) -> Result<(), Job> {
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        match jobs.as_ref() {
            Some(jobs) => jobs.send(job).map_err(|refused| refused.0),
            None => Err(job),
        }
    }

    /// Waits until everything submitted before is written (or failed).
    async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.send(Job::Flush(done)).is_ok() {
            let _ = flushed.await;
        }
    }

    /// Runs `read` on the read connection; its failure becomes `fail`'s error.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Reader) -> Result<T, String> + Send + 'static,
        fail: fn(&Shared, String) -> RegistryError,
    ) -> Result<T, RegistryError> {
        let reader = Arc::clone(&self.reader);
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(PoisonError::into_inner);
            read(&mut reader).map_err(|message| fail(&shared, message))
        })
        .await
        .map_err(|error| self.shared.storage(format!("a read task failed: {error}")))?
    }
}

/// The version `connection`'s file is at, or `StoreVersion` for one this
/// build cannot open: another version, or an early version 1 layout
/// (whose upgrade would relabel a log this build cannot read).
fn refuse_unsupported(connection: &Connection, shown: &str) -> Result<Found, RegistryError> {
    let open_error =
        |error: rusqlite::Error| RegistryError::StoreOpen { path: shown.to_owned(), message: error.to_string() };
    let unsupported =
        |found| RegistryError::StoreVersion { path: shown.to_owned(), found, supported: schema::SCHEMA_VERSION };
    match schema::found_version(connection).map_err(open_error)? {
        Found::Other(found) => Err(unsupported(found)),
        Found::Previous if !schema::has_event_columns(connection).map_err(open_error)? => {
            Err(unsupported(schema::PREVIOUS_VERSION))
        }
        found => Ok(found),
    }
}

/// The path the lock is named after: the database's real path, symlinks
/// resolved (for a file not created yet, its directory's), so that two
/// names of one database share one lock.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_path_buf();
    };
    let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
    std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |directory| directory.join(name))
}

/// Takes the exclusive lock beside the database (beside its real path: a
/// symlink to a held database finds the lock held). A hard link is
/// another name SQLite itself warns against; it is not detected.
fn take_lock(path: &Path) -> Result<File, RegistryError> {
    let shown = path.display().to_string();
    let mut lock_path = real_path(path).into_os_string();
    lock_path.push("-lock");
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|error| {
            RegistryError::StoreOpen { path: shown.clone(), message: format!("lock file: {error}") }
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(RegistryError::StoreLocked { path: shown }),
        Err(TryLockError::Error(error)) => {
            Err(RegistryError::StoreOpen { path: shown, message: format!("lock file: {error}") })
        }
    }
}

#[async_trait]
impl ProcessStore for SqliteStore {
    fn durability_tier(&self) -> DurabilityTier {
        match self.sync {
            SyncMode::Full => DurabilityTier::Durable,
            SyncMode::Normal => DurabilityTier::Inline,
        }
    }

    async fn recover(&self) -> Result<Recovered, RegistryError> {
        self.flush().await;
        // Recovery is the first read of the tables, as a registry opens: a
        // file it cannot read (a scribbled page) cannot be opened.
        self.read(
            |reader| {
                let (records, grants) = rows::read_all(&reader.connection, &mut reader.declarations)?;
                let quarantined = rows::read_quarantined(&reader.connection)?;
                Ok(Recovered { records, grants, quarantined })
            },
            Shared::unreadable,
        )
        .await
    }

    /// Reads the process's row and log, and keeps a copy of them resident
    /// for inline reads until [`Self::release_process`]. Nothing of the
    /// process can be in flight meanwhile (its actor is being started),
    /// and the flush before the read makes the copy hold every answered
    /// commit.
    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
        self.flush().await;
        if self.shared.unknown.lock().unwrap_or_else(PoisonError::into_inner).contains(process_id) {
            return Err(RegistryError::Storage {
                process_id: process_id.to_owned(),
                message: format!(
                    "{}: a commit of this process failed and may or may not be in the file; reopen the store to read it",
                    self.shared.path
                ),
            });
        }
        let process_id = process_id.to_owned();
        let shared = Arc::clone(&self.shared);
        self.read(
            move |reader| {
                let stored = rows::read_process(&reader.connection, &process_id, &mut reader.declarations)?;
                if let Some(stored) = &stored {
                    shared.hold_resident(stored);
                }
                Ok(stored)
            },
            Shared::storage,
        )
        .await
    }

    /// Keeps the fresh process resident, as [`Self::load_process`] would
    /// after reading it back: its registration is durable and nothing
    /// else of it can be in flight (its actor is being started).
    fn load_registered(&self, record: Arc<ProcessRecord>) -> StoredProcess {
        let stored = StoredProcess::new(record);
        self.shared.hold_resident(&stored);
        stored
    }

    /// Holds the resident map's shard lock for `process_id` while `read`
    /// runs: the writer's update of a process in that shard waits so long.
    fn read_inline(&self, process_id: &str, read: &mut dyn FnMut(CommittedView<'_>)) -> InlineRead {
        match self.shared.resident.get(process_id) {
            Some(held) => {
                read(held.committed());
                InlineRead::Read
            }
            None => InlineRead::Unsupported,
        }
    }

    fn release_process(&self, process_id: &str) {
        self.shared.resident.remove(process_id);
    }

    fn submit(&self, commit: Commit, later: CommitCallback) -> Option<CommitResult> {
        if self.is_poisoned() {
            return Some(Err(self.shared.refused()));
        }
        match self.send(Job::Commit(commit, later)) {
            Ok(()) => None,
            Err(_) => Some(Err(self.shared.storage("the store is closed".to_owned()))),
        }
    }

    async fn close(&self) -> Result<(), RegistryError> {
        let (done, closed) = tokio::sync::oneshot::channel();
        // `Close` is the last job the writer can receive: the sender goes
        // under the same hold of the lock, so no commit can slip in behind
        // `Close` after the writer drained the queue (it would be dropped
        // unanswered with the channel). Later commits are refused: nobody
        // may write after the checkpoint.
        let sent = {
            let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
            let sent = jobs.as_ref().is_some_and(|jobs| jobs.send(Job::Close(done)).is_ok());
            jobs.take();
            sent
        };
        let result = if sent {
            closed
                .await
                .unwrap_or_else(|_| Err(self.shared.storage("the writer stopped before closing the file".to_owned())))
        } else {
            Ok(())
        };
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        // Reads after shutdown get `Stopped` from the actor path, as
        // before the store kept anything resident.
        self.shared.resident.clear();
        // Dropping the file releases the lock.
        self.lock.lock().unwrap_or_else(PoisonError::into_inner).take();
        result
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Without close(): the writer finishes what is queued and stops;
        // the WAL stays (SQLite replays it on the next open). The lock is
        // released only after the writer is gone, so a registry opening
        // the file next never writes beside it.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = writer.join();
        }
    }
}
