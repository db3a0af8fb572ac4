//! The writer thread: group commit.
//!
//! One thread owns the write connection. It blocks for the first job, takes
//! every job queued behind it (up to the batch bound), writes them all in
//! one `BEGIN IMMEDIATE ... COMMIT` (should a constraint refuse a job, the
//! batch is written again with a savepoint per job, so that job fails
//! alone), and answers every job of the
//! batch after the commit returned, which under `synchronous = FULL` is
//! after the WAL's fsync. So N callers in flight share one fsync.
//!
//! A failed `COMMIT` (or a failed fsync inside it) leaves the outcome on
//! disk unknown: the whole batch is answered with `Storage`, the store is
//! poisoned, and every later commit is refused until the file is reopened.
//! It is never retried as if nothing happened.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{record_json, status_name, DeclarationIds};
use super::{Shared, StoreFaultsHandle};
use crate::error::RegistryError;
use crate::model::ProcessRecord;
use crate::store::{Commit, CommitCallback, CommitResult, Committed, GrantChange, ProcessChange};

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

/// Runs the writer until `Close` or until every sender is gone.
pub(crate) fn run(mut connection: Connection, jobs: Receiver<Job>, shared: Arc<Shared>, faults: StoreFaultsHandle) {
    let mut declarations = DeclarationIds::default();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < shared.max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut commits = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        let mut close = None;
        for job in batch {
            match job {
                Job::Commit(commit, callback) => commits.push((commit, callback)),
                Job::Flush(done) => flushes.push(done),
                Job::Close(done) => close = Some(done),
            }
        }
        if !commits.is_empty() {
            write_batch(&mut connection, &shared, &faults, &mut declarations, commits);
        }
        for done in flushes {
            let _ = done.send(());
        }
        if let Some(done) = close {
            let result = connection
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(|error| shared.storage(format!("checkpoint on close failed: {error}")));
            let closed = connection.close().map_err(|(_, error)| shared.storage(format!("close failed: {error}")));
            let _ = done.send(result.and(closed));
            return;
        }
    }
}

/// Writes `commits` in one transaction and answers each.
fn write_batch(
    connection: &mut Connection,
    shared: &Shared,
    faults: &StoreFaultsHandle,
    declarations: &mut DeclarationIds,
    commits: Vec<(Commit, CommitCallback)>,
) {
    if shared.poisoned.load(Ordering::Acquire) {
        for (_, callback) in commits {
            callback(Err(shared.refused()));
        }
        return;
    }
    // Fast path: the whole batch in one transaction. A job refused by a
    // constraint (a bug elsewhere, never expected) rolls the attempt back,
    // and the batch is written again with one savepoint per job, so only
    // that job fails.
    let outcome = match write_transaction(connection, shared, faults, declarations, &commits, false) {
        Err(Failure::Job(_)) => {
            declarations.forget();
            write_transaction(connection, shared, faults, declarations, &commits, true)
        }
        other => other,
    };
    let outcome = outcome.map_err(|failure| match failure {
        Failure::Job(error) | Failure::Batch(error) => error,
    });
    match outcome {
        Ok(results) => {
            shared.batches.fetch_add(1, Ordering::Relaxed);
            for ((commit, callback), result) in commits.into_iter().zip(results) {
                if let (Ok(_), Commit::Process { process_id, changes, .. }) = (&result, &commit) {
                    // Before the answer: a read that starts after it sees it.
                    shared.keep_resident(process_id, changes);
                }
                callback(result);
            }
        }
        Err(error) => {
            shared.poisoned.store(true, Ordering::Release);
            declarations.forget();
            tracing::error!(%error, "a group commit failed; the store refuses writes until it is reopened");
            for (_, callback) in commits {
                callback(Err(error.clone()));
            }
        }
    }
}

/// One transaction over `commits`. With `savepoints`, each job runs in its
/// own savepoint and a refused job fails alone; without, the first refused
/// job aborts the attempt with [`Failure::Job`].
fn write_transaction(
    connection: &mut Connection,
    shared: &Shared,
    faults: &StoreFaultsHandle,
    declarations: &mut DeclarationIds,
    commits: &[(Commit, CommitCallback)],
    savepoints: bool,
) -> Result<Vec<CommitResult>, Failure> {
    let io = |error: rusqlite::Error| Failure::Batch(shared.storage(error.to_string()));
    connection.execute_batch("BEGIN IMMEDIATE").map_err(io)?;
    let mut results = Vec::with_capacity(commits.len());
    for (commit, _) in commits {
        if savepoints {
            connection.execute_batch("SAVEPOINT job").map_err(io)?;
        }
        match write_commit(connection, shared, declarations, commit) {
            Ok(committed) => {
                if savepoints {
                    connection.execute_batch("RELEASE job").map_err(io)?;
                }
                results.push(Ok(committed));
            }
            Err(Failure::Job(error)) if savepoints => {
                connection.execute_batch("ROLLBACK TO job; RELEASE job").map_err(io)?;
                results.push(Err(error));
            }
            Err(failure) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(failure);
            }
        }
    }
    if faults.take_commit_failure() {
        let _ = connection.execute_batch("ROLLBACK");
        return Err(Failure::Batch(shared.storage("injected commit failure".to_owned())));
    }
    if let Err(error) = connection.execute_batch("COMMIT") {
        let _ = connection.execute_batch("ROLLBACK");
        return Err(io(error));
    }
    if faults.take_sync_failure() {
        // The commit reached SQLite, but its fsync "failed": what the disk
        // holds is unknown, exactly as after a real EIO.
        return Err(Failure::Batch(shared.storage("injected fsync failure".to_owned())));
    }
    Ok(results)
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
            if event.semantics.terminal.is_some() {
                // The status (and the cleared wait) live in the record.
                let json = record_json(record).map_err(sql_text_error)?;
                connection
                    .prepare_cached(
                        "UPDATE processes SET record = ?2, status = ?3, updated_at_ms = ?4, last_sequence = ?5
                         WHERE id = ?1",
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
                    .prepare_cached("UPDATE processes SET updated_at_ms = ?2, last_sequence = ?3 WHERE id = ?1")?
                    .execute(params![process_id, to_sql_int(record.updated_at_ms), to_sql_int(event.sequence)])?
            }
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
