//! The writer task: group commit on one dedicated connection.
//!
//! It waits for the first job, takes every job queued behind it (up to the
//! batch bound) and writes them all at once, with a fixed number of
//! statements whatever the batch's size. Every process commit of the batch
//! is one statement ([`PROCESS_SQL`]): the rows updated fenced by their
//! versions (a process whose version moved on commits nothing and is
//! answered [`RegistryError::Contended`]), the events, replay keys and acks
//! of the commits that won, and one `pg_notify` per 7,000 bytes of ids. A
//! batch of process commits only (the common one: appends, waits, acks,
//! leases) is that statement alone, in its own implicit transaction: one
//! round trip and one WAL flush. A batch with registrations (one
//! `INSERT ... ON CONFLICT DO NOTHING`) or grant commits (fenced by the
//! grants' version) runs them and that statement in one transaction. Rows
//! are written in id order, so two nodes' batches lock rows in the same
//! order. Every commit of the batch is answered after its commit returned.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use super::{schema, to_int, Inner, Statements, CHANNEL};
use crate::error::RegistryError;
use crate::events::ProcessEventType;
use crate::model::ProcessRecord;
use crate::rules::hashing::sha256_hex_of_json;
use crate::store::sqlite::rows::{record_json, semantics_column, status_name};
use crate::store::{Commit, CommitCallback, CommitResult, Committed, GrantChange, ProcessChange};

/// Work for the writer.
pub(super) enum Job {
    /// Write a commit; answer through the callback.
    Commit(Commit, CommitCallback),
    /// Answer once everything submitted before is written, then stop.
    Close(oneshot::Sender<()>),
}

impl Job {
    /// Answers the job with `error` without writing it.
    pub(super) fn refuse(self, error: RegistryError) {
        match self {
            Self::Commit(_, callback) => callback(Err(error)),
            Self::Close(done) => drop(done.send(())),
        }
    }
}

/// How many times a batch that lost a deadlock or a serialization check
/// is written again before its commits are answered with the error.
const BATCH_ATTEMPTS: usize = 3;

/// Runs the writer until `Close` or until the store is dropped.
pub(super) async fn run(
    mut client: Client,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    inner: Arc<Inner>,
    max_batch: usize,
) {
    let mut hashes = DeclarationHashes::default();
    let mut statements = Statements::default();
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut commits = Vec::with_capacity(batch.len());
        let mut close = None;
        for job in batch {
            match job {
                Job::Commit(commit, callback) => commits.push((commit, callback)),
                Job::Close(done) => close = Some(done),
            }
        }
        if !commits.is_empty() {
            if client.is_closed() {
                // The server went away: one new connection per batch.
                match schema::connect(&inner.config).await {
                    Ok(fresh) => {
                        client = fresh;
                        hashes.forget();
                        statements = Statements::default();
                    }
                    Err(error) => {
                        let error = inner.storage("", format!("the writer cannot reconnect: {error}"));
                        for (_, callback) in commits {
                            callback(Err(error.clone()));
                        }
                        continue;
                    }
                }
            }
            write_batch(&client, &statements, &inner, &mut hashes, commits).await;
        }
        if let Some(done) = close {
            let _ = done.send(());
            return;
        }
    }
}

/// Why a batch failed.
enum Failure {
    /// Before `COMMIT`: rolled back, nothing of it is in the database.
    RolledBack(tokio_postgres::Error),
    /// `COMMIT` itself failed: whether it landed is unknown.
    Unknown(tokio_postgres::Error),
}

fn retryable(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        [SqlState::T_R_DEADLOCK_DETECTED, SqlState::T_R_SERIALIZATION_FAILURE, SqlState::LOCK_NOT_AVAILABLE]
            .contains(code)
    })
}

async fn write_batch(
    client: &Client,
    statements: &Statements,
    inner: &Inner,
    hashes: &mut DeclarationHashes,
    commits: Vec<(Commit, CommitCallback)>,
) {
    let (commits, callbacks): (Vec<Commit>, Vec<CommitCallback>) = commits.into_iter().unzip();
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        match write_transaction(client, statements, hashes, &commits).await {
            Err(Failure::RolledBack(error)) if retryable(&error) && attempt < BATCH_ATTEMPTS => {
                hashes.forget();
                tracing::debug!(%error, attempt, "a group commit lost a lock race; writing it again");
            }
            other => break other,
        }
    };
    match outcome {
        Ok(results) => {
            for (callback, result) in callbacks.into_iter().zip(results) {
                callback(result);
            }
        }
        Err(failure) => {
            hashes.forget();
            let error = match failure {
                Failure::RolledBack(error) => inner.storage("", format!("the group commit was rolled back: {error}")),
                Failure::Unknown(error) => {
                    inner.storage("", format!("COMMIT failed; whether the batch landed is unknown: {error}"))
                }
            };
            tracing::error!(%error, "a PostgreSQL group commit failed");
            for callback in callbacks {
                callback(Err(error.clone()));
            }
        }
    }
}

async fn write_transaction(
    client: &Client,
    statements: &Statements,
    hashes: &mut DeclarationHashes,
    commits: &[Commit],
) -> Result<Vec<CommitResult>, Failure> {
    if commits.iter().all(|commit| matches!(commit, Commit::Process { .. })) {
        // The common batch: appends, waits, acks, leases. One statement in
        // its own implicit transaction: one round trip and one WAL flush.
        // An error the server reports (with a SQL state) rolled it back;
        // a lost connection leaves its outcome unknown.
        return write_process_batch(client, statements, commits).await.map_err(|error| {
            if error.code().is_some() {
                Failure::RolledBack(error)
            } else {
                Failure::Unknown(error)
            }
        });
    }
    client.batch_execute("BEGIN").await.map_err(Failure::RolledBack)?;
    match write_commits(client, statements, hashes, commits).await {
        Ok(results) => {
            client.batch_execute("COMMIT").await.map_err(Failure::Unknown)?;
            Ok(results)
        }
        Err(error) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(Failure::RolledBack(error))
        }
    }
}

/// Which declaration lists the database holds, by the address of the
/// interned list (records that declare the same types share one `Arc`).
#[derive(Default)]
struct DeclarationHashes {
    by_address: HashMap<usize, (Arc<Vec<ProcessEventType>>, String)>,
}

impl DeclarationHashes {
    /// Forgets every list: a rolled-back transaction may have written none.
    fn forget(&mut self) {
        self.by_address.clear();
    }
}

/// A process's row after a commit, as columns (`None`: unchanged).
struct RowUpdate {
    id: String,
    base_version: i64,
    record: Option<String>,
    status: Option<String>,
    updated_at_ms: Option<i64>,
    last_sequence: Option<i64>,
    lease: Option<String>,
}

fn row_update(process_id: &str, base_version: u64, changes: &[ProcessChange]) -> Result<RowUpdate, String> {
    let mut row = RowUpdate {
        id: process_id.to_owned(),
        base_version: to_int(base_version),
        record: None,
        status: None,
        updated_at_ms: None,
        last_sequence: None,
        lease: None,
    };
    let set_record = |row: &mut RowUpdate, record: &ProcessRecord| -> Result<(), String> {
        row.record = Some(record_json(record)?);
        row.status = Some(status_name(&record.status).to_owned());
        row.updated_at_ms = Some(to_int(record.updated_at_ms));
        Ok(())
    };
    for change in changes {
        match change {
            ProcessChange::Appended { event, record, .. } => {
                row.last_sequence = Some(to_int(event.sequence));
                if event.semantics.terminal.is_some() {
                    set_record(&mut row, record)?;
                } else {
                    row.updated_at_ms = Some(to_int(record.updated_at_ms));
                }
            }
            ProcessChange::RecordUpdated { record } => set_record(&mut row, record)?,
            ProcessChange::WakeAcked { .. } => {}
            ProcessChange::LeaseUpdated { lease } => {
                row.lease = Some(serde_json::to_string(lease).map_err(|error| format!("lease is not JSON: {error}"))?);
            }
        }
    }
    Ok(row)
}

/// The statements of one batch; answers per commit, in submit order.
async fn write_commits(
    client: &Client,
    statements: &Statements,
    hashes: &mut DeclarationHashes,
    commits: &[Commit],
) -> Result<Vec<CommitResult>, tokio_postgres::Error> {
    let mut results: Vec<Option<CommitResult>> = (0..commits.len()).map(|_| None).collect();
    let mut notify: Vec<String> = Vec::new();

    // Registrations, in id order.
    let mut registrations: Vec<(usize, &Arc<ProcessRecord>)> = commits
        .iter()
        .enumerate()
        .filter_map(|(index, commit)| match commit {
            Commit::Register { record } => Some((index, record)),
            _ => None,
        })
        .collect();
    registrations.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    if !registrations.is_empty() {
        register(client, statements, hashes, &registrations, &mut results, &mut notify).await?;
    }

    // Grants, fenced by their version.
    for (index, commit) in commits.iter().enumerate() {
        if let Commit::Grants { base_version, changes } = commit {
            let result = write_grants(client, statements, *base_version, changes).await?;
            answer(&mut results, index, result);
        }
    }

    // Quarantines, in submit order.
    for (index, commit) in commits.iter().enumerate() {
        match commit {
            Commit::Quarantined { process_id, reason, since_ms } => {
                let statement = statements
                    .get(
                        client,
                        "INSERT INTO process_registry.quarantined (process_id, reason, since_ms) VALUES ($1, $2, $3)
                         ON CONFLICT (process_id) DO UPDATE SET reason = excluded.reason, since_ms = excluded.since_ms",
                    )
                    .await?;
                client.execute(&statement, &[process_id, reason, &to_int(*since_ms)]).await?;
                answer(&mut results, index, Ok(Committed::Done));
            }
            Commit::QuarantineReleased { process_id } => {
                let statement =
                    statements.get(client, "DELETE FROM process_registry.quarantined WHERE process_id = $1").await?;
                client.execute(&statement, &[process_id]).await?;
                answer(&mut results, index, Ok(Committed::Done));
            }
            Commit::Register { .. } | Commit::Process { .. } | Commit::Grants { .. } => {}
        }
    }

    // Processes, and the notices of the whole batch: one statement.
    write_process_commits(client, statements, commits, &mut results, notify).await?;
    Ok(finished(results))
}

/// Records the answer to the commit at `index`.
fn answer(results: &mut [Option<CommitResult>], index: usize, result: CommitResult) {
    if let Some(slot) = results.get_mut(index) {
        *slot = Some(result);
    }
}

/// JSON arrays of ids, each at most `limit` bytes (an id longer than that
/// alone goes in a payload of its own; ids are bounded far below 8,000).
pub(super) fn notice_payloads(ids: &[String], limit: usize) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut size = 2;
    for id in ids {
        let encoded = serde_json::Value::String(id.clone()).to_string().len() + 1;
        if !current.is_empty() && size + encoded > limit {
            payloads.push(serde_json::to_string(&current).unwrap_or_default());
            current.clear();
            size = 2;
        }
        current.push(id);
        size += encoded;
    }
    if !current.is_empty() {
        payloads.push(serde_json::to_string(&current).unwrap_or_default());
    }
    payloads
}

async fn register(
    client: &Client,
    statements: &Statements,
    hashes: &mut DeclarationHashes,
    registrations: &[(usize, &Arc<ProcessRecord>)],
    results: &mut [Option<CommitResult>],
    notify: &mut Vec<String>,
) -> Result<(), tokio_postgres::Error> {
    let mut new_hashes = Vec::new();
    let mut new_lists = Vec::new();
    let mut ids = Vec::with_capacity(registrations.len());
    let mut declarations = Vec::with_capacity(registrations.len());
    let mut records = Vec::with_capacity(registrations.len());
    let mut statuses = Vec::with_capacity(registrations.len());
    let mut updated = Vec::with_capacity(registrations.len());
    for (index, record) in registrations {
        let address = Arc::as_ptr(&record.event_types) as usize;
        let hash = match hashes.by_address.get(&address) {
            Some((_, hash)) => hash.clone(),
            None => {
                let value = serde_json::to_value(&*record.event_types).unwrap_or_default();
                let hash = sha256_hex_of_json(&value);
                new_hashes.push(hash.clone());
                new_lists.push(value.to_string());
                // Holding the `Arc` keeps the address from being reused.
                hashes.by_address.insert(address, (Arc::clone(&record.event_types), hash.clone()));
                hash
            }
        };
        match record_json(record) {
            Ok(json) => {
                ids.push(record.id.clone());
                declarations.push(hash);
                records.push(json);
                statuses.push(status_name(&record.status).to_owned());
                updated.push(to_int(record.updated_at_ms));
            }
            Err(message) => {
                answer(results, *index, Err(RegistryError::Storage { process_id: record.id.clone(), message }))
            }
        }
    }
    if !new_hashes.is_empty() {
        let statement = statements
            .get(
                client,
                "INSERT INTO process_registry.declarations (hash, event_types)
                 SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (hash) DO NOTHING",
            )
            .await?;
        client.execute(&statement, &[&new_hashes, &new_lists]).await?;
    }
    let statement = statements
        .get(
            client,
            "INSERT INTO process_registry.processes (id, declarations, record, status, updated_at_ms)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .await?;
    let inserted: HashSet<String> = client
        .query(&statement, &[&ids, &declarations, &records, &statuses, &updated])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let taken: Vec<String> = ids.iter().filter(|id| !inserted.contains(*id)).cloned().collect();
    let mut existing: HashMap<String, ProcessRecord> = HashMap::new();
    if !taken.is_empty() {
        let statement = statements
            .get(
                client,
                "SELECT p.id, p.record, d.event_types, p.updated_at_ms FROM process_registry.processes p
                 JOIN process_registry.declarations d ON d.hash = p.declarations WHERE p.id = ANY($1)",
            )
            .await?;
        for row in client.query(&statement, &[&taken]).await? {
            let id: String = row.get(0);
            let event_types: Vec<ProcessEventType> = serde_json::from_str(row.get(2)).unwrap_or_default();
            if let Ok(record) =
                crate::store::sqlite::rows::record_from_row(row.get(1), Arc::new(event_types), row.get(3))
            {
                existing.insert(id, record);
            }
        }
    }
    for (index, record) in registrations {
        if results.get(*index).is_some_and(Option::is_some) {
            continue;
        }
        let result = if inserted.contains(&record.id) {
            notify.push(record.id.clone());
            Ok(Committed::Done)
        } else {
            match existing.remove(&record.id) {
                Some(stored) => Ok(Committed::AlreadyRegistered(Arc::new(stored))),
                None => Err(RegistryError::Storage {
                    process_id: record.id.clone(),
                    message: "the id is taken but its record does not read back".to_owned(),
                }),
            }
        };
        answer(results, *index, result);
    }
    Ok(())
}

/// The process commits of a batch, as the columns of [`PROCESS_SQL`].
#[derive(Default)]
struct ProcessBatch {
    /// (index in the batch, process id) of every commit.
    commits: Vec<(usize, String)>,
    /// The rows, sorted by id before they are written.
    rows: Vec<RowUpdate>,
    events: EventColumns,
    replays: (Vec<String>, Vec<String>, Vec<i64>, Vec<String>),
    acks: (Vec<String>, Vec<i64>),
    /// Processes that get events: the batch's notice names them.
    appended: Vec<String>,
    /// The processes with a commit in the batch: one each (see
    /// [`ProcessBatch::holds`]).
    ids: HashSet<String>,
}

impl ProcessBatch {
    /// Whether the batch already has a commit of `process_id`. A second
    /// one cannot go in the same statement: both rows would be fenced on
    /// versions read before either commits, the row is updated once, and
    /// both would be answered as the winner. (An actor awaits each commit
    /// before its next, so this takes two actors of one process.)
    fn holds(&self, process_id: &str) -> bool {
        self.ids.contains(process_id)
    }

    fn add(
        &mut self,
        index: usize,
        process_id: &str,
        base_version: u64,
        changes: &[ProcessChange],
    ) -> Result<(), String> {
        let row = row_update(process_id, base_version, changes)?;
        for change in changes {
            match change {
                ProcessChange::Appended { event, replay, .. } => {
                    self.events.push(process_id, event);
                    if let Some((key, entry)) = replay {
                        self.replays.0.push(process_id.to_owned());
                        self.replays.1.push(key.clone());
                        self.replays.2.push(to_int(entry.sequence));
                        self.replays.3.push(entry.payload_hash.clone());
                    }
                    self.appended.push(process_id.to_owned());
                }
                ProcessChange::WakeAcked { sequence } => {
                    self.acks.0.push(process_id.to_owned());
                    self.acks.1.push(to_int(*sequence));
                }
                ProcessChange::RecordUpdated { .. } | ProcessChange::LeaseUpdated { .. } => {}
            }
        }
        self.rows.push(row);
        self.commits.push((index, process_id.to_owned()));
        self.ids.insert(process_id.to_owned());
        Ok(())
    }
}

/// Every process commit of a batch and its notices, in one statement: the
/// rows are updated fenced by their versions (`won` holds the processes
/// whose version matched), the events, replay keys and acks of those are
/// inserted, and `pg_notify` runs once per payload. The statement's one
/// row lists the winners.
const PROCESS_SQL: &str = "
WITH won AS (
    UPDATE process_registry.processes AS p SET
        version = p.version + 1,
        record = COALESCE(b.record, p.record),
        status = COALESCE(b.status, p.status),
        updated_at_ms = COALESCE(b.updated_at_ms, p.updated_at_ms),
        last_sequence = COALESCE(b.last_sequence, p.last_sequence),
        lease = COALESCE(b.lease, p.lease)
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
        AS b(id, base_version, record, status, updated_at_ms, last_sequence, lease)
    WHERE p.id = b.id AND p.version = b.base_version
    RETURNING p.id
), new_events AS (
    INSERT INTO process_registry.events
        (process_id, sequence, event_type, wake, replay_key, occurred_at_ms, payload, semantics)
    SELECT e.* FROM unnest($8::text[], $9::bigint[], $10::text[], $11::bool[], $12::text[], $13::bigint[],
                           $14::text[], $15::text[])
        AS e(process_id, sequence, event_type, wake, replay_key, occurred_at_ms, payload, semantics)
    WHERE e.process_id IN (SELECT id FROM won)
), new_replays AS (
    INSERT INTO process_registry.replay_keys (process_id, replay_key, sequence, payload_hash)
    SELECT r.* FROM unnest($16::text[], $17::text[], $18::bigint[], $19::text[])
        AS r(process_id, replay_key, sequence, payload_hash)
    WHERE r.process_id IN (SELECT id FROM won)
), new_acks AS (
    INSERT INTO process_registry.wake_acks (process_id, sequence)
    SELECT a.* FROM unnest($20::text[], $21::bigint[]) AS a(process_id, sequence)
    WHERE a.process_id IN (SELECT id FROM won)
    ON CONFLICT DO NOTHING
), notified AS (
    SELECT pg_notify($22, n.payload) FROM unnest($23::text[]) AS n(payload)
)
SELECT (SELECT COALESCE(array_agg(id), '{}') FROM won), (SELECT count(*) FROM notified)";

/// Writes `batch` and the notices naming `notify` (deduplicated, in
/// payloads far below the 8,000-byte limit); returns the winners.
async fn write_processes(
    client: &Client,
    statements: &Statements,
    batch: &ProcessBatch,
    mut notify: Vec<String>,
) -> Result<HashSet<String>, tokio_postgres::Error> {
    notify.sort();
    notify.dedup();
    let payloads = notice_payloads(&notify, 7_000);
    // Rows in id order, so that two nodes' batches lock them alike.
    let mut rows: Vec<&RowUpdate> = batch.rows.iter().collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let versions: Vec<i64> = rows.iter().map(|row| row.base_version).collect();
    let records: Vec<Option<&str>> = rows.iter().map(|row| row.record.as_deref()).collect();
    let statuses: Vec<Option<&str>> = rows.iter().map(|row| row.status.as_deref()).collect();
    let updated: Vec<Option<i64>> = rows.iter().map(|row| row.updated_at_ms).collect();
    let sequences: Vec<Option<i64>> = rows.iter().map(|row| row.last_sequence).collect();
    let leases: Vec<Option<&str>> = rows.iter().map(|row| row.lease.as_deref()).collect();
    let events = &batch.events;
    let (replay_ids, replay_keys, replay_sequences, replay_hashes) = &batch.replays;
    let (ack_ids, ack_sequences) = &batch.acks;
    let statement = statements.get(client, PROCESS_SQL).await?;
    let row = client
        .query_one(
            &statement,
            &[
                &ids,
                &versions,
                &records,
                &statuses,
                &updated,
                &sequences,
                &leases,
                &events.process_ids,
                &events.sequences,
                &events.types,
                &events.wakes,
                &events.replay_keys,
                &events.occurred,
                &events.payloads,
                &events.semantics,
                replay_ids,
                replay_keys,
                replay_sequences,
                replay_hashes,
                ack_ids,
                ack_sequences,
                &CHANNEL,
                &payloads,
            ],
        )
        .await?;
    let winners: Vec<String> = row.get(0);
    Ok(winners.into_iter().collect())
}

/// A batch of process commits only, as one statement in its own implicit
/// transaction; answers per commit, in submit order.
async fn write_process_batch(
    client: &Client,
    statements: &Statements,
    commits: &[Commit],
) -> Result<Vec<CommitResult>, tokio_postgres::Error> {
    let mut results: Vec<Option<CommitResult>> = (0..commits.len()).map(|_| None).collect();
    write_process_commits(client, statements, commits, &mut results, Vec::new()).await?;
    Ok(finished(results))
}

/// The process commits of `commits`, with the notices naming `notify` and
/// every process that gets events, in one statement; answers each.
async fn write_process_commits(
    client: &Client,
    statements: &Statements,
    commits: &[Commit],
    results: &mut [Option<CommitResult>],
    mut notify: Vec<String>,
) -> Result<(), tokio_postgres::Error> {
    let mut batch = ProcessBatch::default();
    for (index, commit) in commits.iter().enumerate() {
        if let Commit::Process { process_id, base_version, changes, .. } = commit {
            if batch.holds(process_id) {
                // Lost to the first: planned again on what it committed.
                answer(results, index, Err(RegistryError::Contended { process_id: process_id.clone(), attempts: 1 }));
                continue;
            }
            if let Err(message) = batch.add(index, process_id, *base_version, changes) {
                answer(results, index, Err(RegistryError::Storage { process_id: process_id.clone(), message }));
            }
        }
    }
    notify.extend(batch.appended.iter().cloned());
    let winners = write_processes(client, statements, &batch, notify).await?;
    for (index, id) in &batch.commits {
        let result = if winners.contains(id) {
            Ok(Committed::Done)
        } else {
            Err(RegistryError::Contended { process_id: id.clone(), attempts: 1 })
        };
        answer(results, *index, result);
    }
    Ok(())
}

/// The answers, with a `Storage` error for a commit nothing answered (a
/// bug; never expected).
fn finished(results: Vec<Option<CommitResult>>) -> Vec<CommitResult> {
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(RegistryError::Storage {
                    process_id: String::new(),
                    message: "a commit was not written".to_owned(),
                })
            })
        })
        .collect()
}

/// The events of a batch, column by column.
#[derive(Default)]
struct EventColumns {
    process_ids: Vec<String>,
    sequences: Vec<i64>,
    types: Vec<String>,
    wakes: Vec<bool>,
    replay_keys: Vec<Option<String>>,
    occurred: Vec<i64>,
    payloads: Vec<String>,
    semantics: Vec<Option<String>>,
}

impl EventColumns {
    fn push(&mut self, process_id: &str, event: &crate::events::ProcessEvent) {
        self.process_ids.push(process_id.to_owned());
        self.sequences.push(to_int(event.sequence));
        self.types.push(event.event_type.clone());
        self.wakes.push(event.is_wake());
        self.replay_keys.push(event.invocation.replay_key.clone());
        self.occurred.push(to_int(event.occurred_at_ms));
        self.payloads.push(event.payload.to_string());
        // Semantics are plain data; serializing them cannot fail.
        self.semantics.push(semantics_column(event).unwrap_or_default());
    }
}

/// One grant commit: fenced by the grants' version, then each change.
async fn write_grants(
    client: &Client,
    statements: &Statements,
    base_version: u64,
    changes: &[GrantChange],
) -> Result<CommitResult, tokio_postgres::Error> {
    /// One change, ready to run: (scope id, process id, and for a grant
    /// its scope and descriptor as JSON).
    type Prepared<'a> = (String, &'a str, Option<(String, String)>);
    // Every change prepared before anything is written: a refusal after
    // the version moved would commit half of it.
    let mut prepared: Vec<Prepared<'_>> = Vec::with_capacity(changes.len());
    for change in changes {
        prepared.push(match change {
            GrantChange::Granted { scope, process_id, descriptor } => {
                let (Ok(scope_json), Ok(descriptor_json)) =
                    (serde_json::to_string(scope), serde_json::to_string(descriptor))
                else {
                    return Ok(Err(RegistryError::Storage {
                        process_id: process_id.clone(),
                        message: "a grant is not JSON".to_owned(),
                    }));
                };
                (scope.id().0, process_id.as_str(), Some((scope_json, descriptor_json)))
            }
            GrantChange::Revoked { scope_id, process_id } => (scope_id.clone(), process_id.as_str(), None),
        });
    }
    let statement = statements
        .get(client, "UPDATE process_registry.grants_version SET version = version + 1 WHERE id = 1 AND version = $1")
        .await?;
    if client.execute(&statement, &[&to_int(base_version)]).await? == 0 {
        return Ok(Err(RegistryError::Contended { process_id: String::new(), attempts: 1 }));
    }
    for (scope_id, process_id, granted) in prepared {
        match granted {
            Some((scope_json, descriptor_json)) => {
                let statement = statements
                    .get(
                        client,
                        "INSERT INTO process_registry.grants (scope_id, process_id, scope, descriptor)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (scope_id, process_id)
                         DO UPDATE SET scope = excluded.scope, descriptor = excluded.descriptor",
                    )
                    .await?;
                client.execute(&statement, &[&scope_id, &process_id, &scope_json, &descriptor_json]).await?;
            }
            None => {
                let statement = statements
                    .get(client, "DELETE FROM process_registry.grants WHERE scope_id = $1 AND process_id = $2")
                    .await?;
                client.execute(&statement, &[&scope_id, &process_id]).await?;
            }
        }
    }
    Ok(Ok(Committed::Done))
}

#[cfg(test)]
mod tests {
    use super::notice_payloads;

    #[test]
    fn notice_payloads_stay_under_the_limit_and_keep_every_id() {
        let ids: Vec<String> = (0..2_000).map(|n| format!("process-{n:05}")).collect();
        let payloads = notice_payloads(&ids, 7_000);
        assert!(payloads.len() > 1);
        let mut seen = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= 7_000, "{} bytes", payload.len());
            seen.extend(serde_json::from_str::<Vec<String>>(payload).unwrap());
        }
        assert_eq!(seen, ids);
    }
}
