//! The writer task: group commit on one dedicated connection.
//!
//! It waits for the first job, takes every job queued behind it (up to the
//! batch bound) and writes them in one transaction with a fixed number of
//! statements, whatever the batch's size: the registrations in one
//! `INSERT ... ON CONFLICT DO NOTHING`, the processes' rows in one fenced
//! `UPDATE ... FROM unnest(...)` (a process whose version moved on commits
//! nothing and is answered [`RegistryError::Contended`]), then the events,
//! replay keys and acks of the commits that won, each in one statement,
//! the grant commits (fenced by the grants' version), and one `pg_notify`
//! per 7,000 bytes of ids. Rows are written in id order, so two nodes'
//! batches lock rows in the same order. Every commit of the batch is
//! answered after `COMMIT` returned.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

use super::{schema, to_int, Inner, CHANNEL};
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

/// The writer connection's prepared statements, by their SQL.
#[derive(Default)]
struct Statements {
    prepared: std::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl Statements {
    /// The statement for `sql`, prepared on first use.
    async fn get(&self, client: &Client, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(sql).cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = client.prepare(sql).await?;
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sql, statement.clone());
        Ok(statement)
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

    // Processes, in id order: one fenced update of their rows.
    let mut updates: Vec<(usize, RowUpdate)> = Vec::new();
    for (index, commit) in commits.iter().enumerate() {
        if let Commit::Process { process_id, base_version, changes } = commit {
            match row_update(process_id, *base_version, changes) {
                Ok(update) => updates.push((index, update)),
                Err(message) => {
                    answer(
                        &mut results,
                        index,
                        Err(RegistryError::Storage { process_id: process_id.clone(), message }),
                    );
                }
            }
        }
    }
    updates.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    if !updates.is_empty() {
        let winners = update_rows(client, statements, &updates).await?;
        write_logs(client, statements, commits, &updates, &winners, &mut notify).await?;
        for (index, update) in &updates {
            let result = if winners.contains(&update.id) {
                Ok(Committed::Done)
            } else {
                Err(RegistryError::Contended { process_id: update.id.clone(), attempts: 1 })
            };
            answer(&mut results, *index, result);
        }
    }

    // Grants, fenced by their version.
    for (index, commit) in commits.iter().enumerate() {
        if let Commit::Grants { base_version, changes } = commit {
            let result = write_grants(client, statements, *base_version, changes).await?;
            answer(&mut results, index, result);
        }
    }

    // One notice per chunk of ids, far below the 8,000-byte payload limit.
    notify.sort();
    notify.dedup();
    for payload in notice_payloads(&notify, 7_000) {
        let statement = statements.get(client, "SELECT pg_notify($1, $2)").await?;
        client.execute(&statement, &[&CHANNEL, &payload]).await?;
    }
    Ok(results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(RegistryError::Storage {
                    process_id: String::new(),
                    message: "a commit was not written".to_owned(),
                })
            })
        })
        .collect())
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

/// The fenced update of every process row of the batch; returns the ids
/// whose version matched (and moved on by one).
async fn update_rows(
    client: &Client,
    statements: &Statements,
    updates: &[(usize, RowUpdate)],
) -> Result<HashSet<String>, tokio_postgres::Error> {
    let ids: Vec<&str> = updates.iter().map(|(_, row)| row.id.as_str()).collect();
    let versions: Vec<i64> = updates.iter().map(|(_, row)| row.base_version).collect();
    let records: Vec<Option<&str>> = updates.iter().map(|(_, row)| row.record.as_deref()).collect();
    let statuses: Vec<Option<&str>> = updates.iter().map(|(_, row)| row.status.as_deref()).collect();
    let updated: Vec<Option<i64>> = updates.iter().map(|(_, row)| row.updated_at_ms).collect();
    let sequences: Vec<Option<i64>> = updates.iter().map(|(_, row)| row.last_sequence).collect();
    let leases: Vec<Option<&str>> = updates.iter().map(|(_, row)| row.lease.as_deref()).collect();
    let statement = statements
        .get(
            client,
            "UPDATE process_registry.processes AS p SET
                 version = p.version + 1,
                 record = COALESCE(b.record, p.record),
                 status = COALESCE(b.status, p.status),
                 updated_at_ms = COALESCE(b.updated_at_ms, p.updated_at_ms),
                 last_sequence = COALESCE(b.last_sequence, p.last_sequence),
                 lease = COALESCE(b.lease, p.lease)
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[])
                 AS b(id, base_version, record, status, updated_at_ms, last_sequence, lease)
             WHERE p.id = b.id AND p.version = b.base_version
             RETURNING p.id",
        )
        .await?;
    Ok(client
        .query(&statement, &[&ids, &versions, &records, &statuses, &updated, &sequences, &leases])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// The events, replay keys and acks of the commits that won.
async fn write_logs(
    client: &Client,
    statements: &Statements,
    commits: &[Commit],
    updates: &[(usize, RowUpdate)],
    winners: &HashSet<String>,
    notify: &mut Vec<String>,
) -> Result<(), tokio_postgres::Error> {
    let mut events = EventColumns::default();
    let (mut replay_ids, mut replay_keys, mut replay_sequences, mut replay_hashes) = (vec![], vec![], vec![], vec![]);
    let (mut ack_ids, mut ack_sequences) = (vec![], vec![]);
    for (index, update) in updates {
        if !winners.contains(&update.id) {
            continue;
        }
        let Some(Commit::Process { process_id, changes, .. }) = commits.get(*index) else {
            continue;
        };
        for change in changes {
            match change {
                ProcessChange::Appended { event, replay, .. } => {
                    events.push(process_id, event);
                    if let Some((key, entry)) = replay {
                        replay_ids.push(process_id.clone());
                        replay_keys.push(key.clone());
                        replay_sequences.push(to_int(entry.sequence));
                        replay_hashes.push(entry.payload_hash.clone());
                    }
                    notify.push(process_id.clone());
                }
                ProcessChange::WakeAcked { sequence } => {
                    ack_ids.push(process_id.clone());
                    ack_sequences.push(to_int(*sequence));
                }
                ProcessChange::RecordUpdated { .. } | ProcessChange::LeaseUpdated { .. } => {}
            }
        }
    }
    if !events.process_ids.is_empty() {
        let statement = statements
            .get(
                client,
                "INSERT INTO process_registry.events
                     (process_id, sequence, event_type, wake, replay_key, occurred_at_ms, payload, semantics)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bool[], $5::text[], $6::bigint[],
                                      $7::text[], $8::text[])",
            )
            .await?;
        client
            .execute(
                &statement,
                &[
                    &events.process_ids,
                    &events.sequences,
                    &events.types,
                    &events.wakes,
                    &events.replay_keys,
                    &events.occurred,
                    &events.payloads,
                    &events.semantics,
                ],
            )
            .await?;
    }
    if !replay_ids.is_empty() {
        let statement = statements
            .get(
                client,
                "INSERT INTO process_registry.replay_keys (process_id, replay_key, sequence, payload_hash)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[])",
            )
            .await?;
        client.execute(&statement, &[&replay_ids, &replay_keys, &replay_sequences, &replay_hashes]).await?;
    }
    if !ack_ids.is_empty() {
        let statement = statements
            .get(
                client,
                "INSERT INTO process_registry.wake_acks (process_id, sequence)
                 SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
            )
            .await?;
        client.execute(&statement, &[&ack_ids, &ack_sequences]).await?;
    }
    Ok(())
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
    let statement = statements
        .get(client, "UPDATE process_registry.grants_version SET version = version + 1 WHERE id = 1 AND version = $1")
        .await?;
    if client.execute(&statement, &[&to_int(base_version)]).await? == 0 {
        return Ok(Err(RegistryError::Contended { process_id: String::new(), attempts: 1 }));
    }
    for change in changes {
        match change {
            GrantChange::Granted { scope, process_id, descriptor } => {
                let (Ok(scope_json), Ok(descriptor_json)) =
                    (serde_json::to_string(scope), serde_json::to_string(descriptor))
                else {
                    return Ok(Err(RegistryError::Storage {
                        process_id: process_id.clone(),
                        message: "a grant is not JSON".to_owned(),
                    }));
                };
                let statement = statements
                    .get(
                        client,
                        "INSERT INTO process_registry.grants (scope_id, process_id, scope, descriptor)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (scope_id, process_id)
                         DO UPDATE SET scope = excluded.scope, descriptor = excluded.descriptor",
                    )
                    .await?;
                client.execute(&statement, &[&scope.id().0, process_id, &scope_json, &descriptor_json]).await?;
            }
            GrantChange::Revoked { scope_id, process_id } => {
                let statement = statements
                    .get(client, "DELETE FROM process_registry.grants WHERE scope_id = $1 AND process_id = $2")
                    .await?;
                client.execute(&statement, &[scope_id, process_id]).await?;
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
