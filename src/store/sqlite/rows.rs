//! Rows to values and back: how records, declarations and processes are
//! written and read.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use crate::events::{ProcessEvent, ProcessEventType};
use crate::model::{ProcessRecord, ProcessStatus};
use crate::rules::append::ReplayEntry;
use crate::rules::hashing::sha256_hex_of_json;
use crate::rules::lease::LeaseState;
use crate::store::{GrantChange, StoredProcess};

/// The name the `status` column holds.
pub(crate) fn status_name(status: &ProcessStatus) -> &'static str {
    match status {
        ProcessStatus::Running => "running",
        ProcessStatus::Completed { .. } => "completed",
        ProcessStatus::Failed { .. } => "failed",
        ProcessStatus::Cancelled { .. } => "cancelled",
    }
}

/// The record as stored: JSON without its event types (they are in
/// `declarations`).
pub(crate) fn record_json(record: &ProcessRecord) -> Result<String, String> {
    let mut value = serde_json::to_value(record).map_err(|error| format!("record is not JSON: {error}"))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("event_types".to_owned(), Value::Array(Vec::new()));
    }
    Ok(value.to_string())
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
    let mut records = Vec::new();
    {
        let mut statement =
            connection.prepare("SELECT record, declarations, updated_at_ms FROM processes ORDER BY id").map_err(sql)?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?)))
            .map_err(sql)?;
        for row in rows {
            let (json, hash, updated_at_ms) = row.map_err(sql)?;
            let event_types = declarations
                .get(&hash)
                .cloned()
                .ok_or_else(|| format!("a record names unknown declarations {hash}"))?;
            records.push(Arc::new(record_from_row(&json, event_types, updated_at_ms)?));
        }
    }
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

/// One process's whole committed state.
pub(crate) fn read_process(
    connection: &Connection,
    process_id: &str,
    declarations: &mut HashMap<String, Arc<Vec<ProcessEventType>>>,
) -> Result<Option<StoredProcess>, String> {
    let sql = |error: rusqlite::Error| error.to_string();
    let row: Option<(String, String, i64, Option<String>)> = connection
        .prepare_cached("SELECT record, declarations, updated_at_ms, lease FROM processes WHERE id = ?1")
        .and_then(|mut statement| {
            statement.query_row([process_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))).optional()
        })
        .map_err(sql)?;
    let Some((json, hash, updated_at_ms, lease)) = row else {
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
    let record = Arc::new(record_from_row(&json, event_types, updated_at_ms)?);
    let lease: LeaseState = match lease {
        Some(json) => parse(&json).map_err(sql)?,
        None => LeaseState::default(),
    };
    let mut events = Vec::new();
    {
        let mut statement = connection
            .prepare_cached("SELECT event FROM events WHERE process_id = ?1 ORDER BY sequence")
            .map_err(sql)?;
        let rows = statement.query_map([process_id], |row| row.get::<_, String>(0)).map_err(sql)?;
        for row in rows {
            let event: ProcessEvent = parse(&row.map_err(sql)?).map_err(sql)?;
            if event.sequence != events.len() as u64 + 1 {
                return Err(format!("the log of `{process_id}` has a gap before sequence {}", event.sequence));
            }
            events.push(Arc::new(event));
        }
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
    Ok(Some(StoredProcess { record, events, replay, acked, lease }))
}
