//! The reads, each on a pooled connection held only for its statements.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Row};

use super::{from_int, Inner, Statements};
use crate::error::RegistryError;
use crate::events::ProcessEventType;
use crate::model::ProcessRecord;
use crate::rules::append::ReplayEntry;
use crate::rules::lease::LeaseState;
use crate::store::sqlite::rows::{event_from_columns, record_from_row};
use crate::store::{Changes, GrantChange, Probe, ProcessChange, StoredProcess};

/// The shared pipelined connection.
async fn reader(inner: &Inner) -> Result<Arc<(tokio_postgres::Client, Statements)>, RegistryError> {
    inner.reader.get(&inner.config).await.map_err(|error| inner.storage("", format!("no connection: {error}")))
}

/// One single-statement read on the shared connection.
async fn read(
    inner: &Inner,
    process_id: &str,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, RegistryError> {
    let shared = reader(inner).await?;
    let (client, statements) = &*shared;
    let statement = statements.get(client, sql).await.map_err(sql_error(inner, process_id))?;
    client.query(&statement, params).await.map_err(sql_error(inner, process_id))
}

async fn connection(inner: &Inner, process_id: &str) -> Result<Object, RegistryError> {
    inner.pool.get().await.map_err(|error| inner.storage(process_id, format!("no connection: {error}")))
}

fn sql_error<'a>(inner: &'a Inner, process_id: &str) -> impl Fn(tokio_postgres::Error) -> RegistryError + 'a {
    let process_id = process_id.to_owned();
    move |error| inner.storage(&process_id, error)
}

fn parse<T: serde::de::DeserializeOwned>(
    inner: &Inner,
    process_id: &str,
    what: &str,
    json: &str,
) -> Result<T, RegistryError> {
    serde_json::from_str(json)
        .map_err(|error| inner.storage(process_id, format!("a stored {what} does not parse: {error}")))
}

/// The version of one process and the server's clock, in one statement.
pub(super) async fn probe(inner: &Inner, process_id: &str) -> Result<Option<Probe>, RegistryError> {
    let rows = read(
        inner,
        process_id,
        "SELECT version, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
         FROM process_registry.processes WHERE id = $1",
        &[&process_id],
    )
    .await?;
    Ok(rows.first().map(|row| Probe { version: from_int(row.get(0)), now_ms: from_int(row.get(1)) }))
}

/// The declaration lists `hashes` name, from the cache or the database.
async fn declarations(inner: &Inner, hashes: impl Iterator<Item = String>) -> Result<(), RegistryError> {
    let mut missing: Vec<String> = hashes.filter(|hash| inner.declaration(hash).is_none()).collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    let rows = read(
        inner,
        "",
        "SELECT hash, event_types FROM process_registry.declarations WHERE hash = ANY($1)",
        &[&missing],
    )
    .await?;
    for row in rows {
        let hash: String = row.get(0);
        let event_types: Vec<ProcessEventType> = parse(inner, "", "declaration", row.get(1))?;
        inner.remember_declaration(hash, Arc::new(event_types));
    }
    Ok(())
}

/// Records from rows of `id, record, declarations, updated_at_ms`.
async fn records(inner: &Inner, rows: Vec<Row>) -> Result<Vec<Arc<ProcessRecord>>, RegistryError> {
    declarations(inner, rows.iter().map(|row| row.get::<_, String>(2))).await?;
    rows.iter()
        .map(|row| {
            let id: &str = row.get(0);
            let hash: &str = row.get(2);
            let event_types = inner
                .declaration(hash)
                .ok_or_else(|| inner.storage(id, format!("the record names unknown declarations {hash}")))?;
            record_from_row(row.get(1), event_types, row.get(3))
                .map(Arc::new)
                .map_err(|message| inner.storage(id, message))
        })
        .collect()
}

/// The records of `process_ids` that exist, in id order.
pub(super) async fn fetch_records(
    inner: &Inner,
    process_ids: &[String],
) -> Result<Vec<Arc<ProcessRecord>>, RegistryError> {
    if process_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = read(
        inner,
        "",
        concat!(
            "SELECT id, record, declarations, updated_at_ms FROM process_registry.processes ",
            "WHERE id = ANY($1) ORDER BY id"
        ),
        &[&process_ids],
    )
    .await?;
    records(inner, rows).await
}

/// Every record (or every running one), in id order.
pub(super) async fn list_records(inner: &Inner, running_only: bool) -> Result<Vec<Arc<ProcessRecord>>, RegistryError> {
    let sql = if running_only {
        concat!(
            "SELECT id, record, declarations, updated_at_ms FROM process_registry.processes ",
            "WHERE status = 'running' ORDER BY id"
        )
    } else {
        "SELECT id, record, declarations, updated_at_ms FROM process_registry.processes ORDER BY id"
    };
    let rows = read(inner, "", sql, &[]).await?;
    records(inner, rows).await
}

pub(super) async fn grants_version(inner: &Inner) -> Result<u64, RegistryError> {
    let rows = read(inner, "", "SELECT version FROM process_registry.grants_version WHERE id = 1", &[]).await?;
    let row = rows.first().ok_or_else(|| inner.storage("", "the grants' version row is missing"))?;
    Ok(from_int(row.get(0)))
}

/// A read-only transaction that sees one snapshot (rolled back when
/// dropped, so a cancelled read returns its connection clean).
async fn snapshot(client: &mut Object) -> Result<deadpool_postgres::Transaction<'_>, tokio_postgres::Error> {
    client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await
}

/// The ids of the quarantined processes, ascending.
pub(super) async fn quarantined(inner: &Inner) -> Result<Vec<String>, RegistryError> {
    let client = connection(inner, "").await?;
    let rows = client
        .query("SELECT process_id FROM process_registry.quarantined ORDER BY process_id", &[])
        .await
        .map_err(sql_error(inner, ""))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// The grants' version and every grant, read in one snapshot.
pub(super) async fn load_grants(inner: &Inner) -> Result<(u64, Vec<GrantChange>), RegistryError> {
    let mut client = connection(inner, "").await?;
    let transaction = snapshot(&mut client).await.map_err(sql_error(inner, ""))?;
    let version: i64 = transaction
        .query_one("SELECT version FROM process_registry.grants_version WHERE id = 1", &[])
        .await
        .map_err(sql_error(inner, ""))?
        .get(0);
    let rows = transaction
        .query("SELECT scope, process_id, descriptor FROM process_registry.grants ORDER BY scope_id, process_id", &[])
        .await
        .map_err(sql_error(inner, ""))?;
    transaction.commit().await.map_err(sql_error(inner, ""))?;
    let grants = rows
        .iter()
        .map(|row| {
            Ok(GrantChange::Granted {
                scope: parse(inner, "", "grant scope", row.get(0))?,
                process_id: row.get(1),
                descriptor: parse(inner, "", "grant descriptor", row.get(2))?,
            })
        })
        .collect::<Result<Vec<_>, RegistryError>>()?;
    Ok((from_int(version), grants))
}

/// The record and lease of a process row whose first columns are
/// `record, declarations, updated_at_ms, lease`.
async fn record_and_lease(
    inner: &Inner,
    process_id: &str,
    row: &Row,
) -> Result<(ProcessRecord, LeaseState), RegistryError> {
    let hash: String = row.get(1);
    declarations(inner, std::iter::once(hash.clone())).await?;
    let event_types =
        inner.declaration(&hash).ok_or_else(|| inner.storage(process_id, "the record names unknown declarations"))?;
    let record =
        record_from_row(row.get(0), event_types, row.get(2)).map_err(|message| inner.storage(process_id, message))?;
    let lease = match row.get::<_, Option<&str>>(3) {
        Some(json) => parse(inner, process_id, "lease", json)?,
        None => LeaseState::default(),
    };
    Ok((record, lease))
}

/// One statement, so one snapshot: the row, the events and replay keys
/// after `$2`, and every ack, as JSON text.
const CHANGES_SQL: &str = "
SELECT p.record, p.declarations, p.updated_at_ms, p.lease, p.version, p.last_sequence,
    COALESCE((SELECT json_agg(json_build_array(e.sequence, e.event_type, e.replay_key, e.occurred_at_ms,
                                               e.payload, e.semantics) ORDER BY e.sequence)
              FROM process_registry.events e WHERE e.process_id = p.id AND e.sequence > $2), '[]')::text,
    COALESCE((SELECT json_agg(json_build_array(r.replay_key, r.sequence, r.payload_hash))
              FROM process_registry.replay_keys r WHERE r.process_id = p.id AND r.sequence > $2), '[]')::text,
    COALESCE((SELECT json_agg(a.sequence) FROM process_registry.wake_acks a WHERE a.process_id = p.id),
             '[]')::text
FROM process_registry.processes p WHERE p.id = $1";

/// An event as [`CHANGES_SQL`] lists it.
type EventColumns = (i64, String, Option<String>, i64, String, Option<String>);

/// The changes of one process after sequence `after`, in one statement on
/// the shared connection (see [`SharedStore::load_changes`](crate::store::SharedStore::load_changes)).
pub(super) async fn load_changes(
    inner: &Inner,
    process_id: &str,
    after: u64,
) -> Result<Option<Changes>, RegistryError> {
    let rows = read(inner, process_id, CHANGES_SQL, &[&process_id, &super::to_int(after)]).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let (record, lease) = record_and_lease(inner, process_id, row).await?;
    let record = Arc::new(record);
    let events: Vec<EventColumns> = parse(inner, process_id, "event list", row.get(6))?;
    let replays: Vec<(String, i64, String)> = parse(inner, process_id, "replay key list", row.get(7))?;
    let acks: Vec<i64> = parse(inner, process_id, "ack list", row.get(8))?;
    let mut replay_of: HashMap<u64, (String, ReplayEntry)> = replays
        .into_iter()
        .map(|(key, sequence, payload_hash)| {
            (from_int(sequence), (key, ReplayEntry { sequence: from_int(sequence), payload_hash }))
        })
        .collect();
    let mut changes = Vec::with_capacity(events.len() + 2 + acks.len());
    for (index, (sequence, event_type, replay_key, occurred_at_ms, payload, semantics)) in
        events.into_iter().enumerate()
    {
        if from_int(sequence) != after + index as u64 + 1 {
            return Err(inner.storage(process_id, format!("the log has a gap before sequence {sequence}")));
        }
        let event = event_from_columns(
            process_id,
            sequence,
            event_type,
            replay_key,
            occurred_at_ms,
            &payload,
            semantics.as_deref(),
        )
        .map_err(|message| inner.storage(process_id, message))?;
        let replay = replay_of.remove(&event.sequence);
        changes.push(ProcessChange::Appended { event: Arc::new(event), replay, record: Arc::clone(&record) });
    }
    changes.push(ProcessChange::RecordUpdated { record });
    changes.push(ProcessChange::LeaseUpdated { lease });
    changes.extend(acks.into_iter().map(|sequence| ProcessChange::WakeAcked { sequence: from_int(sequence) }));
    Ok(Some(Changes { version: from_int(row.get(4)), last_sequence: from_int(row.get(5)), changes }))
}

/// One process's whole committed state, read in one snapshot.
pub(super) async fn load_process(inner: &Inner, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
    let mut client = connection(inner, process_id).await?;
    let failed = sql_error(inner, process_id);
    let transaction = snapshot(&mut client).await.map_err(&failed)?;
    let row = transaction
        .query_opt(
            "SELECT record, declarations, updated_at_ms, lease, version FROM process_registry.processes WHERE id = $1",
            &[&process_id],
        )
        .await
        .map_err(&failed)?;
    let Some(row) = row else {
        return Ok(None);
    };
    // Three statements pipelined on the one connection.
    let id: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&process_id];
    let (events, replays, acks) = tokio::try_join!(
        transaction.query(
            "SELECT sequence, event_type, replay_key, occurred_at_ms, payload, semantics
             FROM process_registry.events WHERE process_id = $1 ORDER BY sequence",
            &id,
        ),
        transaction.query(
            "SELECT replay_key, sequence, payload_hash FROM process_registry.replay_keys WHERE process_id = $1",
            &id,
        ),
        transaction.query("SELECT sequence FROM process_registry.wake_acks WHERE process_id = $1", &id),
    )
    .map_err(&failed)?;
    transaction.commit().await.map_err(&failed)?;
    let (record, lease) = record_and_lease(inner, process_id, &row).await?;
    let mut log = Vec::with_capacity(events.len());
    for event in &events {
        let parsed = event_from_columns(
            process_id,
            event.get(0),
            event.get(1),
            event.get(2),
            event.get(3),
            event.get(4),
            event.get(5),
        )
        .map_err(|message| inner.storage(process_id, message))?;
        if parsed.sequence != log.len() as u64 + 1 {
            return Err(inner.storage(process_id, format!("the log has a gap before sequence {}", parsed.sequence)));
        }
        log.push(Arc::new(parsed));
    }
    let replay: BTreeMap<String, ReplayEntry> = replays
        .iter()
        .map(|row| (row.get(0), ReplayEntry { sequence: from_int(row.get(1)), payload_hash: row.get(2) }))
        .collect();
    let acked: BTreeSet<u64> = acks.iter().map(|row| from_int(row.get(0))).collect();
    Ok(Some(StoredProcess {
        record: Arc::new(record),
        events: log,
        replay,
        acked,
        lease,
        version: from_int(row.get(4)),
    }))
}
