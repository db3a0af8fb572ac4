//! Rows to values and back: how records, declarations and processes are
//! written and read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use super::inspect::{ProcessSummary, StatusCounts, StoredGrant, StoredStatus};
use crate::events::{ProcessEvent, ProcessEventSemantics, ProcessEventType};
use crate::model::{ProcessRecord, ProcessStatus};
use crate::rules::append::{invocation, ReplayEntry};
use crate::rules::hashing::sha256_hex_of_json;
use crate::rules::lease::LeaseState;
use crate::store::{GrantChange, StoredProcess};

/// The name the `status` column holds.
pub(crate) fn status_name(status: &ProcessStatus) -> &'static str {
    stored_status_name(StoredStatus::from(status))
}

/// The status a `status` column names (`None` for a name this build never
/// writes).
pub(crate) fn status_from_name(name: &str) -> Option<StoredStatus> {
    match name {
        "running" => Some(StoredStatus::Running),
        "completed" => Some(StoredStatus::Completed),
        "failed" => Some(StoredStatus::Failed),
        "cancelled" => Some(StoredStatus::Cancelled),
        _ => None,
    }
}

/// The name [`StoredStatus`] has in the `status` column.
pub(crate) fn stored_status_name(status: StoredStatus) -> &'static str {
    match status {
        StoredStatus::Running => "running",
        StoredStatus::Completed => "completed",
        StoredStatus::Failed => "failed",
        StoredStatus::Cancelled => "cancelled",
    }
}

/// The record as stored: JSON without its event types (they are in
/// `declarations`). Written straight from the record with an empty list
/// in their place, so the declarations, most of a record's size, are
/// never serialized only to be dropped.
pub(crate) fn record_json(record: &ProcessRecord) -> Result<String, String> {
    let stored = ProcessRecord { event_types: Arc::default(), ..record.clone() };
    serde_json::to_string(&stored).map_err(|error| format!("record is not JSON: {error}"))
}

/// A record read back, with its event types and its `updated_at_ms` column.
pub(crate) fn record_from_row(
    json: &str,
    event_types: Arc<Vec<ProcessEventType>>,
    updated_at_ms: i64,
) -> Result<ProcessRecord, String> {
    let mut record: ProcessRecord =
        serde_json::from_str(json).map_err(|error| format!("a stored record does not parse: {error}"))?;
    record.event_types = event_types;
    record.updated_at_ms = u64::try_from(updated_at_ms).unwrap_or(0);
    Ok(record)
}

/// The event types stored under `hash`.
pub(crate) fn event_types_by_hash(connection: &Connection, hash: &str) -> rusqlite::Result<Arc<Vec<ProcessEventType>>> {
    let json: String = connection
        .prepare_cached("SELECT event_types FROM declarations WHERE hash = ?1")?
        .query_row([hash], |row| row.get(0))?;
    parse(&json).map(Arc::new)
}

fn parse<T: serde::de::DeserializeOwned>(json: &str) -> rusqlite::Result<T> {
    serde_json::from_str(json)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
}

/// Which declaration lists the writer has stored, by the address of the
/// interned list (records that declare the same types share one `Arc`).
#[derive(Default)]
pub(crate) struct DeclarationIds {
    pub(crate) by_address: HashMap<usize, (Arc<Vec<ProcessEventType>>, String)>,
}

impl DeclarationIds {
    /// Forgets every list: a rolled-back transaction may have written
    /// none of them.
    pub(crate) fn forget(&mut self) {
        self.by_address.clear();
    }

    /// The hash of `event_types`, stored in `declarations` if new.
    pub(crate) fn id_of(
        &mut self,
        connection: &Connection,
        event_types: &Arc<Vec<ProcessEventType>>,
    ) -> rusqlite::Result<String> {
        let address = Arc::as_ptr(event_types) as usize;
        if let Some((_, hash)) = self.by_address.get(&address) {
            return Ok(hash.clone());
        }
        let value = serde_json::to_value(&**event_types)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        let hash = sha256_hex_of_json(&value);
        connection
            .prepare_cached("INSERT OR IGNORE INTO declarations (hash, event_types) VALUES (?1, ?2)")?
            .execute(params![hash, value.to_string()])?;
        // Holding the `Arc` keeps the address from being reused.
        self.by_address.insert(address, (Arc::clone(event_types), hash.clone()));
        Ok(hash)
    }
}

/// Every record (sharing one list per declaration) and every grant.
pub(crate) fn read_all(
    connection: &Connection,
    declarations: &mut HashMap<String, Arc<Vec<ProcessEventType>>>,
) -> Result<(Vec<Arc<ProcessRecord>>, Vec<GrantChange>), String> {
    let sql = |error: rusqlite::Error| error.to_string();
    {
        let mut statement = connection.prepare("SELECT hash, event_types FROM declarations").map_err(sql)?;
        let rows =
            statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))).map_err(sql)?;
        for row in rows {
            let (hash, json) = row.map_err(sql)?;
            declarations.insert(hash, Arc::new(parse(&json).map_err(sql)?));
        }
    }
    let mut rows_read = Vec::new();
    {
        let mut statement =
            connection.prepare("SELECT record, declarations, updated_at_ms FROM processes ORDER BY id").map_err(sql)?;
        let rows = statement
            .query_map([], |row| {
                let hash = row.get_ref(1)?.as_str()?;
                let event_types = declarations.get(hash).cloned().ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        format!("a record names unknown declarations {hash}").into(),
                    )
                })?;
                Ok((row.get::<_, String>(0)?, event_types, row.get::<_, i64>(2)?))
            })
            .map_err(sql)?;
        for row in rows {
            rows_read.push(row.map_err(sql)?);
        }
    }
    let records = parse_records(rows_read)?;
    let mut grants = Vec::new();
    {
        let mut statement = connection
            .prepare("SELECT scope, process_id, descriptor FROM grants ORDER BY scope_id, process_id")
            .map_err(sql)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
            .map_err(sql)?;
        for row in rows {
            let (scope, process_id, descriptor) = row.map_err(sql)?;
            grants.push(GrantChange::Granted {
                scope: parse(&scope).map_err(sql)?,
                process_id,
                descriptor: parse(&descriptor).map_err(sql)?,
            });
        }
    }
    Ok((records, grants))
}

/// The ids of the quarantined processes, ascending.
pub(crate) fn read_quarantined(connection: &Connection) -> Result<Vec<String>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    let mut statement = connection.prepare("SELECT process_id FROM quarantined ORDER BY process_id").map_err(sql)?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0)).map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// Parses the records read at open: the JSON is most of the cost of
/// opening a big file, so it is split over the machine's cores (at most
/// four threads), in order.
fn parse_records(rows: Vec<(String, Arc<Vec<ProcessEventType>>, i64)>) -> Result<Vec<Arc<ProcessRecord>>, String> {
    let parse = |chunk: &[(String, Arc<Vec<ProcessEventType>>, i64)]| {
        chunk
            .iter()
            .map(|(json, event_types, updated_at_ms)| {
                record_from_row(json, Arc::clone(event_types), *updated_at_ms).map(Arc::new)
            })
            .collect::<Result<Vec<_>, String>>()
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from).clamp(1, 4);
    if threads == 1 || rows.len() < 4_096 {
        return parse(&rows);
    }
    let chunk = rows.len().div_ceil(threads);
    let parsed: Vec<Result<Vec<_>, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = rows.chunks(chunk).map(|part| scope.spawn(move || parse(part))).collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|_| Err("a record parser thread panicked".to_owned())))
            .collect()
    });
    let mut records = Vec::with_capacity(rows.len());
    for part in parsed {
        records.extend(part?);
    }
    Ok(records)
}

/// A process's row: its record, its lease and its last sequence.
pub(crate) struct ProcessRow {
    pub(crate) record: Arc<ProcessRecord>,
    pub(crate) lease: LeaseState,
    pub(crate) last_sequence: u64,
}

/// One process's row, or `None` when the file does not hold the id.
pub(crate) fn read_process_row(
    connection: &Connection,
    process_id: &str,
    declarations: &mut HashMap<String, Arc<Vec<ProcessEventType>>>,
) -> Result<Option<ProcessRow>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    let row: Option<(String, String, i64, Option<String>, i64)> = connection
        .prepare_cached("SELECT record, declarations, updated_at_ms, lease, last_sequence FROM processes WHERE id = ?1")
        .and_then(|mut statement| {
            statement
                .query_row([process_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)))
                .optional()
        })
        .map_err(sql)?;
    let Some((json, hash, updated_at_ms, lease, last_sequence)) = row else {
        return Ok(None);
    };
    let event_types = match declarations.get(&hash) {
        Some(found) => Arc::clone(found),
        None => {
            let found = event_types_by_hash(connection, &hash).map_err(sql)?;
            declarations.insert(hash, Arc::clone(&found));
            found
        }
    };
    Ok(Some(ProcessRow {
        record: Arc::new(record_from_row(&json, event_types, updated_at_ms)?),
        lease: lease_from_column(lease).map_err(sql)?,
        last_sequence: u64::try_from(last_sequence).unwrap_or(0),
    }))
}

/// The `lease` column: JSON, or NULL before the first claim.
fn lease_from_column(lease: Option<String>) -> rusqlite::Result<LeaseState> {
    match lease {
        Some(json) => parse(&json),
        None => Ok(LeaseState::default()),
    }
}

/// An event from the columns both durable stores keep: sequence, type,
/// replay key, time, payload JSON and the materialized semantics as JSON
/// (`None` when it has none); its lineage follows from these.
pub(crate) fn event_from_columns(
    process_id: &str,
    sequence: i64,
    event_type: String,
    replay_key: Option<String>,
    occurred_at_ms: i64,
    payload: &str,
    semantics: Option<&str>,
) -> Result<ProcessEvent, String> {
    let sequence = u64::try_from(sequence).unwrap_or(0);
    let malformed = |error: serde_json::Error| format!("event {sequence} of `{process_id}` does not parse: {error}");
    Ok(ProcessEvent {
        process_id: process_id.to_owned(),
        sequence,
        invocation: invocation(process_id, sequence, &event_type, replay_key),
        event_type,
        payload: serde_json::from_str(payload).map_err(malformed)?,
        semantics: match semantics {
            Some(json) => serde_json::from_str(json).map_err(malformed)?,
            None => ProcessEventSemantics::default(),
        },
        occurred_at_ms: u64::try_from(occurred_at_ms).unwrap_or(0),
    })
}

/// The semantics column of an event: JSON, or `None` when it has none.
pub(crate) fn semantics_column(event: &ProcessEvent) -> Result<Option<String>, String> {
    if event.semantics.terminal.is_none() && event.semantics.wake.is_none() {
        return Ok(None);
    }
    serde_json::to_string(&event.semantics).map(Some).map_err(|error| format!("semantics are not JSON: {error}"))
}

/// The events of `process_id` with a sequence above `after`, ascending;
/// an error if they do not follow `after` without a gap.
/// `last_sequence` is the process row's, which sizes the answer (a
/// capacity hint, never trusted).
pub(crate) fn read_events_after(
    connection: &Connection,
    process_id: &str,
    after: u64,
    last_sequence: u64,
) -> Result<Vec<Arc<ProcessEvent>>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    // Capped: a corrupt row must not reserve gigabytes.
    let expected = last_sequence.saturating_sub(after).min(1 << 20);
    let mut events = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    let mut statement = connection
        .prepare_cached(
            "SELECT sequence, event_type, replay_key, occurred_at_ms, payload, semantics FROM events
             WHERE process_id = ?1 AND sequence > ?2 ORDER BY sequence",
        )
        .map_err(sql)?;
    let rows = statement
        .query_map(params![process_id, super::writer::to_sql_int(after)], |row| {
            let semantics: Option<String> = row.get(5)?;
            event_from_columns(
                process_id,
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get_ref(4)?.as_str()?,
                semantics.as_deref(),
            )
            .map_err(|error| rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, error.into()))
        })
        .map_err(sql)?;
    for row in rows {
        let event = row.map_err(sql)?;
        if event.sequence != after.saturating_add(events.len() as u64).saturating_add(1) {
            return Err(format!("the log of `{process_id}` has a gap before sequence {}", event.sequence));
        }
        events.push(Arc::new(event));
    }
    Ok(events)
}

/// One process's whole committed state.
pub(crate) fn read_process(
    connection: &Connection,
    process_id: &str,
    declarations: &mut HashMap<String, Arc<Vec<ProcessEventType>>>,
) -> Result<Option<StoredProcess>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    // One snapshot for the row and the rest (nothing writes a process
    // while its actor starts, but an inspector-style read is consistent
    // only so). Read-only: dropping it ends it.
    let snapshot = connection.unchecked_transaction().map_err(sql)?;
    let Some(ProcessRow { record, lease, last_sequence }) = read_process_row(connection, process_id, declarations)?
    else {
        return Ok(None);
    };
    let events = read_events_after(connection, process_id, 0, last_sequence)?;
    // The writer moves `last_sequence` with every event it writes: a log
    // that ends elsewhere is not one this store wrote, and every later
    // append would be refused as out of order.
    let logged = events.last().map_or(0, |event| event.sequence);
    if logged != last_sequence {
        return Err(format!("the log of `{process_id}` ends at {logged}, but its row says {last_sequence}"));
    }
    let mut replay = BTreeMap::new();
    {
        let mut statement = connection
            .prepare_cached("SELECT replay_key, sequence, payload_hash FROM replay_keys WHERE process_id = ?1")
            .map_err(sql)?;
        let rows = statement
            .query_map([process_id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?))
            })
            .map_err(sql)?;
        for row in rows {
            let (key, sequence, payload_hash) = row.map_err(sql)?;
            replay.insert(key, ReplayEntry { sequence: u64::try_from(sequence).unwrap_or(0), payload_hash });
        }
    }
    let mut acked = BTreeSet::new();
    {
        let mut statement =
            connection.prepare_cached("SELECT sequence FROM wake_acks WHERE process_id = ?1").map_err(sql)?;
        let rows = statement.query_map([process_id], |row| row.get::<_, i64>(0)).map_err(sql)?;
        for row in rows {
            acked.insert(u64::try_from(row.map_err(sql)?).unwrap_or(0));
        }
    }
    drop(snapshot);
    Ok(Some(StoredProcess { record, events, replay, acked, lease, version: 0 }))
}

/// The grants of one process, by scope id.
pub(crate) fn read_grants_of(connection: &Connection, process_id: &str) -> Result<Vec<StoredGrant>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    let mut statement = connection
        .prepare_cached("SELECT scope, descriptor FROM grants WHERE process_id = ?1 ORDER BY scope_id")
        .map_err(sql)?;
    let rows = statement
        .query_map([process_id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
        .map_err(sql)?;
    let mut grants = Vec::new();
    for row in rows {
        let (scope, descriptor) = row.map_err(sql)?;
        grants.push(StoredGrant { scope: parse(&scope).map_err(sql)?, descriptor: parse(&descriptor).map_err(sql)? });
    }
    Ok(grants)
}

/// How many processes the file holds in each status.
pub(crate) fn count_by_status(connection: &Connection) -> Result<StatusCounts, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    let mut statement =
        connection.prepare_cached("SELECT status, count(*) FROM processes GROUP BY status").map_err(sql)?;
    let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))).map_err(sql)?;
    let mut counts = StatusCounts::default();
    for row in rows {
        let (name, count) = row.map_err(sql)?;
        let count = u64::try_from(count).unwrap_or(0);
        match status_from_name(&name) {
            Some(StoredStatus::Running) => counts.running = count,
            Some(StoredStatus::Completed) => counts.completed = count,
            Some(StoredStatus::Failed) => counts.failed = count,
            Some(StoredStatus::Cancelled) => counts.cancelled = count,
            None => return Err(format!("{count} processes have an unknown status `{name}`")),
        }
    }
    Ok(counts)
}

/// Up to `limit` processes (of `status` only, when given), ids ascending,
/// from their columns: no record is parsed.
pub(crate) fn read_summaries(
    connection: &Connection,
    status: Option<StoredStatus>,
    limit: Option<u64>,
) -> Result<Vec<ProcessSummary>, String> {
    type Columns = (String, String, i64, i64, Option<String>);
    let sql = |error: rusqlite::Error| error.to_string();
    let columns = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Columns> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
    };
    // SQLite reads a negative LIMIT as none.
    let limit = limit.map_or(-1, super::writer::to_sql_int);
    // Two statements, so a filtered listing walks the (status, id) index.
    let rows: Vec<Columns> = match status {
        Some(status) => connection
            .prepare_cached(
                "SELECT id, status, last_sequence, updated_at_ms, lease FROM processes
                 WHERE status = ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut statement| {
                statement.query_map(params![stored_status_name(status), limit], columns)?.collect()
            }),
        None => connection
            .prepare_cached(
                "SELECT id, status, last_sequence, updated_at_ms, lease FROM processes ORDER BY id LIMIT ?1",
            )
            .and_then(|mut statement| statement.query_map(params![limit], columns)?.collect()),
    }
    .map_err(sql)?;
    let mut summaries = Vec::with_capacity(rows.len());
    for (id, name, last_sequence, updated_at_ms, lease) in rows {
        let status = status_from_name(&name).ok_or_else(|| format!("process `{id}` has an unknown status `{name}`"))?;
        let lease = lease_from_column(lease).map_err(sql)?;
        summaries.push(ProcessSummary {
            id,
            status,
            last_sequence: u64::try_from(last_sequence).unwrap_or(0),
            updated_at_ms: u64::try_from(updated_at_ms).unwrap_or(0),
            lease: lease.current.map(|lease| *lease),
            last_fencing_token: lease.last_fencing_token,
        });
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::{ProcessExternalRef, ProcessInput, ProcessRegistration, SessionScope, WaitKind, WaitState};
    use crate::rules::limits::Limits;
    use crate::rules::registration::prepare_registration;
    use crate::rules::schema::CompileEach;

    #[test]
    fn a_record_is_stored_without_its_event_types_and_reads_back_whole() {
        let registration = ProcessRegistration::new("p", ProcessInput::external(json!({"a": [1, "x"]})))
            .with_env_ref("env")
            .with_wake_target(SessionScope::with_frame("s", "f"));
        let prepared = prepare_registration(registration, &Limits::default(), &CompileEach).unwrap();
        let mut record = prepared.new_record(7);
        record.external_ref =
            Some(ProcessExternalRef { backend: "queue".to_owned(), id: "id-1".to_owned(), metadata: Some(json!({})) });
        let kind =
            WaitKind::Signal { name: "go".to_owned(), event_type: "t".to_owned(), key: "k".to_owned(), ordinal: 2 };
        record.wait = Some(WaitState { kind, since_ms: 8 });
        record.updated_at_ms = 9;
        let json = record_json(&record).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(stored["event_types"], json!([]), "the declarations live in their own table");
        let read = record_from_row(&json, Arc::clone(&record.event_types), 9).unwrap();
        assert_eq!(read, record);
    }
}
