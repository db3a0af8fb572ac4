//! The writer thread: group commit.
//!
//! One thread owns the write connection. It blocks for the first job and
//! opens a `BEGIN IMMEDIATE` transaction, writes each commit into it as it
//! arrives, and commits them all with one `COMMIT`; every job of the batch
//! is answered after the `COMMIT` returned, which under
//! `synchronous = FULL` is after the WAL's fsync. So N callers in flight
//! share one fsync. Should a constraint refuse a job (a bug elsewhere,
//! never expected), the batch is written again with a savepoint per job,
//! so that job fails alone. What its actor planned on top of a refused
//! commit (and sent before it heard of the refusal) is refused too: every
//! later commit of the process with the refused commit's plan (see
//! [`Commit::Process`]), so no record, lease or ack planned on a change
//! the file does not hold is written. Appends are also fenced on the
//! process's stored last sequence: a log in the file never has a gap.
//!
//! **How long a batch stays open.** Callers that waited through a commit
//! are already queued when it ends; the callers it answered come back a
//! moment later, each with its next call. If the writer committed only
//! what was queued, those two groups would take turns, each getting one
//! commit in two. So the batch after a commit waits for as many commits as
//! were queued plus as many as it answered (at most [`CommitMode`]'s
//! bound), or until a linger of a quarter of the last `COMMIT`'s duration
//! (at most [`MAX_LINGER`]) has passed, whichever comes first. It writes
//! what arrives meanwhile, so the wait overlaps the statements' CPU. A
//! lone sequential caller never waits: one was answered, one comes back.
//! With fsync in the tens of microseconds the linger is as short.
//!
//! A failed `COMMIT` (or a failed fsync inside it) leaves the outcome on
//! disk unknown: the whole batch is answered with `Storage`, the store is
//! poisoned, and every later commit is refused until the file is reopened.
//! It is never retried as if nothing happened.
//!
//! [`CommitMode`]: super::CommitMode

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{record_json, status_name, DeclarationIds};
use super::{Shared, StoreFaultsHandle};
use crate::error::RegistryError;
use crate::model::ProcessRecord;
use crate::store::{Commit, CommitCallback, CommitResult, Committed, GrantChange, ProcessChange};

/// The longest a batch waits for the callers the last one answered.
pub(crate) const MAX_LINGER: Duration = Duration::from_millis(2);

/// How long an idle writer looks for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// Work for the writer.
pub(crate) enum Job {
    /// Write a commit; answer through the callback.
    Commit(Commit, CommitCallback),
    /// Answer once everything submitted before is written.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Checkpoint the WAL, close the connection and stop.
    Close(tokio::sync::oneshot::Sender<Result<(), RegistryError>>),
}

/// A job's failure: the job's own (a constraint), or the batch's (I/O).
enum Failure {
    Job(RegistryError),
    Batch(RegistryError),
}

/// The write connection and what the writer keeps between batches.
struct Writer {
    connection: Connection,
    shared: Arc<Shared>,
    faults: StoreFaultsHandle,
    declarations: DeclarationIds,
    /// How long the last `COMMIT` took (its fsync, mostly).
    last_commit: Duration,
    /// Process id -> the newest plan of its that had a commit refused.
    /// Written on the savepoint path, in job order (and by an injected
    /// refusal). An entry refuses the commits of that plan still on their
    /// way; it is kept after them, since refusals are never expected and
    /// this stays a few entries.
    refused_plans: HashMap<String, u64>,
}

/// Where the open batch's transaction is.
enum Transaction {
    /// Not begun: no commit yet.
    Idle,
    /// Begun, every commit so far written.
    Writing,
    /// A commit was refused by a constraint: the batch is written again,
    /// one savepoint per job, when it ends.
    Refused,
    /// The store was poisoned before the batch: every commit is refused.
    Poisoned,
    /// The transaction failed (I/O): the batch fails with this.
    Failed(RegistryError),
}

/// The jobs of one batch, and its transaction.
struct Batch {
    commits: Vec<(Commit, CommitCallback)>,
    /// Answers of the commits written so far (while `Writing`).
    results: Vec<CommitResult>,
    flushes: Vec<tokio::sync::oneshot::Sender<()>>,
    close: Option<tokio::sync::oneshot::Sender<Result<(), RegistryError>>>,
    transaction: Transaction,
}

/// Runs the writer until `Close` or until every sender is gone.
pub(crate) fn run(connection: Connection, jobs: Receiver<Job>, shared: Arc<Shared>, faults: StoreFaultsHandle) {
    let max_batch = shared.max_batch;
    let mut writer = Writer {
        connection,
        shared,
        faults,
        declarations: DeclarationIds::default(),
        last_commit: Duration::ZERO,
        refused_plans: HashMap::new(),
    };
    // Jobs queued while the last batch committed, and how many it answered.
    let mut waiting: Vec<Job> = Vec::new();
    let mut answered = 0;
    loop {
        // Counted before blocking: a job that arrives after the batch ended
        // is one of the callers it answered coming back, not one more.
        let queued = waiting.iter().filter(|job| matches!(job, Job::Commit(..))).count();
        if waiting.is_empty() {
            match spin_then_recv(&jobs, answered) {
                Some(job) => waiting.push(job),
                None => return,
            }
        }
        let expected = queued.saturating_add(answered).min(max_batch);
        let mut batch = Batch::new();
        for job in waiting.drain(..) {
            writer.take(&mut batch, job);
        }
        let deadline = Instant::now() + writer.linger();
        while batch.close.is_none() && batch.commits.len() < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            // Empty, timed out or disconnected: the batch is complete.
            let next = if batch.commits.len() >= expected || left.is_zero() {
                jobs.try_recv().ok()
            } else {
                jobs.recv_timeout(left).ok()
            };
            match next {
                Some(job) => writer.take(&mut batch, job),
                None => break,
            }
        }
        let outcome = writer.finish(&mut batch);
        // Callers who waited through this commit open the next batch.
        while batch.close.is_none() && waiting.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        answered = batch.commits.len();
        if let Some(done) = writer.answer(batch, outcome) {
            // Nothing may be written after the checkpoint: whatever was
            // queued behind `Close` is refused, never dropped unanswered.
            for job in waiting.drain(..).chain(jobs.try_iter()) {
                writer.refuse_closed(job);
            }
            // A reader still inside the WAL (an inspector past the busy
            // timeout) keeps it from being truncated: nothing is lost, the
            // next open checkpoints it.
            let result = writer
                .connection
                .query_row("PRAGMA wal_checkpoint(TRUNCATE);", [], |row| row.get::<_, i64>(0))
                .map(|busy| {
                    if busy != 0 {
                        tracing::warn!(path = %writer.shared.path, "the WAL was not truncated on close: a reader held it");
                    }
                })
                .map_err(|error| writer.shared.storage(format!("checkpoint on close failed: {error}")));
            let closed =
                writer.connection.close().map_err(|(_, error)| writer.shared.storage(format!("close failed: {error}")));
            let _ = done.send(result.and(closed));
            return;
        }
    }
}

/// The next job, or `None` once every sender is gone. When the last batch
/// answered callers, one of them is likely back within microseconds: the
/// writer looks for it for [`SPIN`] (yielding the core) before it sleeps,
/// which saves the sleep and the wake-up a lone caller would pay per call.
fn spin_then_recv(jobs: &Receiver<Job>, answered: usize) -> Option<Job> {
    if answered > 0 {
        let started = Instant::now();
        while started.elapsed() < SPIN {
            match jobs.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Empty) => std::thread::yield_now(),
                Err(TryRecvError::Disconnected) => return None,
            }
        }
    }
    jobs.recv().ok()
}

impl Batch {
    fn new() -> Self {
        Self {
            commits: Vec::new(),
            results: Vec::new(),
            flushes: Vec::new(),
            close: None,
            transaction: Transaction::Idle,
        }
    }
}

impl Writer {
    /// How long the next batch may wait for callers to come back.
    fn linger(&self) -> Duration {
        (self.last_commit / 4).min(MAX_LINGER)
    }

    /// Adds `job` to `batch`, writing a commit into its transaction at once.
    fn take(&mut self, batch: &mut Batch, job: Job) {
        let (commit, callback) = match job {
            Job::Commit(commit, callback) => (commit, callback),
            Job::Flush(done) => return batch.flushes.push(done),
            Job::Close(done) => {
                batch.close = Some(done);
                return;
            }
        };
        if matches!(batch.transaction, Transaction::Idle) {
            batch.transaction = if self.shared.poisoned.load(Ordering::Acquire) {
                Transaction::Poisoned
            } else {
                match self.connection.execute_batch("BEGIN IMMEDIATE") {
                    Ok(()) => Transaction::Writing,
                    Err(error) => Transaction::Failed(self.shared.storage(error.to_string())),
                }
            };
        }
        if matches!(batch.transaction, Transaction::Writing) {
            // Refused for its plan: answered alone, nothing was written, and
            // the batch goes on.
            if let Some(error) = self.refused_plan(&commit) {
                batch.results.push(Err(error));
                batch.commits.push((commit, callback));
                return;
            }
            match write_commit(&self.connection, &self.shared, &mut self.declarations, &commit) {
                Ok(committed) => batch.results.push(Ok(committed)),
                Err(Failure::Job(_)) => batch.transaction = Transaction::Refused,
                Err(Failure::Batch(error)) => {
                    let _ = self.connection.execute_batch("ROLLBACK");
                    batch.transaction = Transaction::Failed(error);
                }
            }
        }
        batch.commits.push((commit, callback));
    }

    /// Ends the batch's transaction: the answer of each of its commits, or
    /// the error that fails them all.
    fn finish(&mut self, batch: &mut Batch) -> Result<Vec<CommitResult>, RegistryError> {
        match std::mem::replace(&mut batch.transaction, Transaction::Idle) {
            Transaction::Idle => Ok(Vec::new()),
            Transaction::Poisoned => Err(self.shared.refused()),
            Transaction::Failed(error) => Err(error),
            Transaction::Writing => {
                self.commit().map_err(failure_error)?;
                Ok(std::mem::take(&mut batch.results))
            }
            Transaction::Refused => {
                let _ = self.connection.execute_batch("ROLLBACK");
                self.declarations.forget();
                self.write_each_alone(&batch.commits).map_err(failure_error)
            }
        }
    }

    /// `COMMIT`, timed, with the injected faults around it.
    fn commit(&mut self) -> Result<(), Failure> {
        if self.faults.take_commit_failure() {
            let _ = self.connection.execute_batch("ROLLBACK");
            return Err(Failure::Batch(self.shared.storage("injected commit failure".to_owned())));
        }
        let started = Instant::now();
        if let Err(error) = self.connection.execute_batch("COMMIT") {
            let _ = self.connection.execute_batch("ROLLBACK");
            return Err(Failure::Batch(self.shared.storage(error.to_string())));
        }
        self.last_commit = started.elapsed();
        if self.faults.take_sync_failure() {
            // The commit reached SQLite, but its fsync "failed": what the disk
            // holds is unknown, exactly as after a real EIO.
            return Err(Failure::Batch(self.shared.storage("injected fsync failure".to_owned())));
        }
        Ok(())
    }

    /// The refusal of a commit planned on a commit of its process that
    /// was refused (checked without SQL), or `None` to write it.
    fn refused_plan(&mut self, commit: &Commit) -> Option<RegistryError> {
        let Commit::Process { process_id, plan, .. } = commit else {
            return None;
        };
        let refusal = |message: &str| {
            Some(RegistryError::Storage { process_id: process_id.clone(), message: message.to_owned() })
        };
        if self.faults.take_change_refusal() {
            self.refuse_plan(process_id, *plan);
            return refusal("the store refused the change (injected)");
        }
        if self.refused_plans.get(process_id).is_some_and(|refused| plan <= refused) {
            return refusal("planned on a commit of this process that the store refused");
        }
        None
    }

    fn refuse_plan(&mut self, process_id: &str, plan: u64) {
        let refused = self.refused_plans.entry(process_id.to_owned()).or_insert(plan);
        *refused = (*refused).max(plan);
    }

    /// The retry path: `commits` in one transaction, each in its own
    /// savepoint, so a job a constraint refuses fails alone.
    fn write_each_alone(&mut self, commits: &[(Commit, CommitCallback)]) -> Result<Vec<CommitResult>, Failure> {
        let io = |shared: &Shared, error: rusqlite::Error| Failure::Batch(shared.storage(error.to_string()));
        self.connection.execute_batch("BEGIN IMMEDIATE").map_err(|error| io(&self.shared, error))?;
        let mut results = Vec::with_capacity(commits.len());
        for (commit, _) in commits {
            if let Some(error) = self.refused_plan(commit) {
                results.push(Err(error));
                continue;
            }
            let written = self.connection.execute_batch("SAVEPOINT job").map_err(|error| io(&self.shared, error));
            let written = written.and_then(|()| {
                match write_commit(&self.connection, &self.shared, &mut self.declarations, commit) {
                    Ok(committed) => {
                        self.connection.execute_batch("RELEASE job").map_err(|error| io(&self.shared, error))?;
                        Ok(Ok(committed))
                    }
                    Err(Failure::Job(error)) => {
                        self.connection
                            .execute_batch("ROLLBACK TO job; RELEASE job")
                            .map_err(|error| io(&self.shared, error))?;
                        // The job may have added a declarations row the
                        // rollback just removed: the cache must not name it.
                        self.declarations.forget();
                        if let Commit::Process { process_id, plan, .. } = commit {
                            self.refuse_plan(process_id, *plan);
                        }
                        Ok(Err(error))
                    }
                    Err(failure) => Err(failure),
                }
            });
            match written {
                Ok(result) => results.push(result),
                Err(failure) => {
                    let _ = self.connection.execute_batch("ROLLBACK");
                    return Err(failure);
                }
            }
        }
        self.commit()?;
        Ok(results)
    }

    /// Answers every job of `batch`; hands back the `Close` to carry out.
    fn answer(
        &mut self,
        batch: Batch,
        outcome: Result<Vec<CommitResult>, RegistryError>,
    ) -> Option<tokio::sync::oneshot::Sender<Result<(), RegistryError>>> {
        let shared = &self.shared;
        match outcome {
            Ok(results) => {
                if !batch.commits.is_empty() {
                    shared.batches.fetch_add(1, Ordering::Relaxed);
                }
                for ((commit, callback), result) in batch.commits.into_iter().zip(results) {
                    if let (Ok(_), Commit::Process { process_id, changes, .. }) = (&result, &commit) {
                        // Before the answer: a read that starts after it sees it.
                        shared.keep_resident(process_id, changes);
                    }
                    callback(result);
                }
            }
            Err(error) => {
                if !shared.poisoned.swap(true, Ordering::AcqRel) {
                    tracing::error!(%error, "a group commit failed; the store refuses writes until it is reopened");
                }
                self.declarations.forget();
                // Before the answers: an actor told of the failure may
                // restart and load its process at once.
                let mut unknown = shared.unknown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                unknown.extend(batch.commits.iter().filter_map(|(commit, _)| match commit {
                    Commit::Process { process_id, .. } => Some(process_id.clone()),
                    _ => None,
                }));
                drop(unknown);
                for (_, callback) in batch.commits {
                    callback(Err(error.clone()));
                }
            }
        }
        for done in batch.flushes {
            let _ = done.send(());
        }
        batch.close
    }

    /// A job that came after `Close`.
    fn refuse_closed(&self, job: Job) {
        match job {
            Job::Commit(_, callback) => callback(Err(self.shared.storage("the store is closed".to_owned()))),
            Job::Flush(done) => {
                let _ = done.send(());
            }
            Job::Close(done) => {
                let _ = done.send(Ok(()));
            }
        }
    }
}

fn failure_error(failure: Failure) -> RegistryError {
    match failure {
        Failure::Job(error) | Failure::Batch(error) => error,
    }
}

/// Classifies a statement error: constraint violations fail their job only.
fn classify(shared: &Shared, process_id: &str, error: rusqlite::Error) -> Failure {
    match &error {
        rusqlite::Error::SqliteFailure(code, _) if code.code == rusqlite::ErrorCode::ConstraintViolation => {
            Failure::Job(RegistryError::Storage {
                process_id: process_id.to_owned(),
                message: format!("the store refused the change: {error}"),
            })
        }
        _ => Failure::Batch(shared.storage(error.to_string())),
    }
}

fn write_commit(
    connection: &Connection,
    shared: &Shared,
    declarations: &mut DeclarationIds,
    commit: &Commit,
) -> Result<Committed, Failure> {
    match commit {
        Commit::Register { record } => register(connection, shared, declarations, record),
        Commit::Process { process_id, changes, .. } => {
            for change in changes {
                write_change(connection, process_id, change).map_err(|error| match error {
                    Written::Missing => Failure::Job(RegistryError::Storage {
                        process_id: process_id.clone(),
                        message: "change for a process the store does not hold".to_owned(),
                    }),
                    Written::OutOfOrder(sequence) => Failure::Job(RegistryError::Storage {
                        process_id: process_id.clone(),
                        message: format!(
                            "event {sequence} does not follow the stored log (planned on a commit that failed)"
                        ),
                    }),
                    Written::Sql(error) => classify(shared, process_id, error),
                })?;
            }
            Ok(Committed::Done)
        }
        Commit::Grants { changes, .. } => {
            for change in changes {
                write_grant(connection, change).map_err(|error| classify(shared, "", error))?;
            }
            Ok(Committed::Done)
        }
        Commit::Quarantined { process_id, reason, since_ms } => {
            connection
                .prepare_cached(
                    "INSERT INTO quarantined (process_id, reason, since_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (process_id) DO UPDATE SET reason = excluded.reason, since_ms = excluded.since_ms",
                )
                .and_then(|mut statement| statement.execute(params![process_id, reason, to_sql_int(*since_ms)]))
                .map_err(|error| classify(shared, process_id, error))?;
            Ok(Committed::Done)
        }
        Commit::QuarantineReleased { process_id } => {
            connection
                .prepare_cached("DELETE FROM quarantined WHERE process_id = ?1")
                .and_then(|mut statement| statement.execute(params![process_id]))
                .map_err(|error| classify(shared, process_id, error))?;
            Ok(Committed::Done)
        }
    }
}

fn register(
    connection: &Connection,
    shared: &Shared,
    declarations: &mut DeclarationIds,
    record: &Arc<ProcessRecord>,
) -> Result<Committed, Failure> {
    let fail = |error| classify(shared, &record.id, error);
    let existing: Option<(String, String, i64)> = connection
        .prepare_cached("SELECT record, declarations, updated_at_ms FROM processes WHERE id = ?1")
        .and_then(|mut statement| {
            statement.query_row([&record.id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()
        })
        .map_err(fail)?;
    if let Some((json, hash, updated_at_ms)) = existing {
        let event_types = super::rows::event_types_by_hash(connection, &hash).map_err(fail)?;
        let stored = super::rows::record_from_row(&json, event_types, updated_at_ms)
            .map_err(|message| Failure::Batch(shared.storage(message)))?;
        return Ok(Committed::AlreadyRegistered(Arc::new(stored)));
    }
    let hash = declarations.id_of(connection, &record.event_types).map_err(fail)?;
    let json = record_json(record).map_err(|message| Failure::Job(shared.storage(message)))?;
    connection
        .prepare_cached(
            "INSERT INTO processes (id, declarations, record, status, updated_at_ms, last_sequence, lease)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL)",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                record.id,
                hash,
                json,
                status_name(&record.status),
                to_sql_int(record.updated_at_ms)
            ])
        })
        .map_err(fail)?;
    Ok(Committed::Done)
}

/// Why one change was not written.
enum Written {
    /// The process is not in the file.
    Missing,
    /// An event that does not follow the process's stored log: it was
    /// planned on a commit that failed.
    OutOfOrder(u64),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for Written {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(error)
    }
}

fn write_change(connection: &Connection, process_id: &str, change: &ProcessChange) -> Result<(), Written> {
    let updated = match change {
        ProcessChange::Appended { event, replay, record } => {
            // The update below is fenced on the stored last sequence: an
            // event planned on a commit that failed (its predecessor is not
            // in the file) is refused, never written after a gap.
            // The event as its columns: its lineage follows from them.
            let semantics = super::rows::semantics_column(event).map_err(sql_text_error)?;
            connection
                .prepare_cached(
                    "INSERT INTO events (process_id, sequence, event_type, wake, replay_key, occurred_at_ms,
                     payload, semantics) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    process_id,
                    to_sql_int(event.sequence),
                    event.event_type,
                    event.is_wake(),
                    event.invocation.replay_key,
                    to_sql_int(event.occurred_at_ms),
                    event.payload.to_string(),
                    semantics
                ])?;
            if let Some((key, entry)) = replay {
                connection
                    .prepare_cached(
                        "INSERT INTO replay_keys (process_id, replay_key, sequence, payload_hash) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![process_id, key, to_sql_int(entry.sequence), entry.payload_hash])?;
            }
            let moved = if event.semantics.terminal.is_some() {
                // The status (and the cleared wait) live in the record.
                let json = record_json(record).map_err(sql_text_error)?;
                connection
                    .prepare_cached(
                        "UPDATE processes SET record = ?2, status = ?3, updated_at_ms = ?4, last_sequence = ?5
                         WHERE id = ?1 AND last_sequence = ?5 - 1",
                    )?
                    .execute(params![
                        process_id,
                        json,
                        status_name(&record.status),
                        to_sql_int(record.updated_at_ms),
                        to_sql_int(event.sequence)
                    ])?
            } else {
                connection
                    .prepare_cached(
                        "UPDATE processes SET updated_at_ms = ?2, last_sequence = ?3
                         WHERE id = ?1 AND last_sequence = ?3 - 1",
                    )?
                    .execute(params![process_id, to_sql_int(record.updated_at_ms), to_sql_int(event.sequence)])?
            };
            if moved == 0 && process_exists(connection, process_id)? {
                return Err(Written::OutOfOrder(event.sequence));
            }
            moved
        }
        ProcessChange::RecordUpdated { record } => {
            let json = record_json(record).map_err(sql_text_error)?;
            connection
                .prepare_cached("UPDATE processes SET record = ?2, status = ?3, updated_at_ms = ?4 WHERE id = ?1")?
                .execute(params![process_id, json, status_name(&record.status), to_sql_int(record.updated_at_ms)])?
        }
        ProcessChange::WakeAcked { sequence } => {
            connection
                .prepare_cached("INSERT OR IGNORE INTO wake_acks (process_id, sequence) VALUES (?1, ?2)")?
                .execute(params![process_id, to_sql_int(*sequence)])?;
            1
        }
        ProcessChange::LeaseUpdated { lease } => {
            let json = serde_json::to_string(lease)
                .map_err(|error| Written::Sql(rusqlite::Error::ToSqlConversionFailure(Box::new(error))))?;
            connection
                .prepare_cached("UPDATE processes SET lease = ?2 WHERE id = ?1")?
                .execute(params![process_id, json])?
        }
    };
    if updated == 1 {
        Ok(())
    } else {
        Err(Written::Missing)
    }
}

/// Whether the file holds `process_id` (asked only when a fenced update
/// moved nothing).
fn process_exists(connection: &Connection, process_id: &str) -> rusqlite::Result<bool> {
    connection
        .prepare_cached("SELECT 1 FROM processes WHERE id = ?1")?
        .query_row([process_id], |_| Ok(()))
        .optional()
        .map(|found| found.is_some())
}

fn sql_text_error(message: String) -> Written {
    Written::Sql(rusqlite::Error::ToSqlConversionFailure(message.into()))
}

fn write_grant(connection: &Connection, change: &GrantChange) -> rusqlite::Result<()> {
    match change {
        GrantChange::Granted { scope, process_id, descriptor } => {
            let scope_json = serde_json::to_string(scope)
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
            let descriptor_json = serde_json::to_string(descriptor)
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
            connection
                .prepare_cached(
                    "INSERT INTO grants (scope_id, process_id, scope, descriptor) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (scope_id, process_id) DO UPDATE SET scope = excluded.scope,
                     descriptor = excluded.descriptor",
                )?
                .execute(params![scope.id().0, process_id, scope_json, descriptor_json])?;
        }
        GrantChange::Revoked { scope_id, process_id } => {
            connection
                .prepare_cached("DELETE FROM grants WHERE scope_id = ?1 AND process_id = ?2")?
                .execute(params![scope_id, process_id])?;
        }
    }
    Ok(())
}

/// SQLite integers are signed; registry numbers (sequences, epoch ms) fit
/// far below `i64::MAX`, and larger ones are stored saturated.
pub(crate) fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
