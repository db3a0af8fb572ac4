//! The file: its tables, its version, and how a connection to it is set up.
//!
//! Version 2 of the schema:
//!
//! - `declarations`: each distinct list of event types once, by the SHA-256
//!   of its canonical JSON; records point at it, so a million processes
//!   declaring the same types store them once.
//! - `processes`: one row per process: the record as JSON (without its
//!   event types), the columns that change on every append kept apart
//!   (`updated_at_ms`, `last_sequence`) so an append does not rewrite the
//!   record, the status for counts, and the lease state as JSON (its
//!   fencing token survives release and reopen).
//! - `events`: `WITHOUT ROWID`, keyed by (process, sequence), an event as
//!   its columns: type, wake flag, replay key, time, payload JSON and the
//!   materialized semantics as JSON (NULL when none); its lineage follows
//!   from these and is rebuilt on read. No secondary index: typed counts
//!   and waits are answered from the log in the process's actor, never
//!   from the file, and an index would cost every append one more page in
//!   the WAL (files made before this index was dropped keep it; both read
//!   alike).
//! - `replay_keys`, `wake_acks`, `grants`: keyed as their names say.
//! - `quarantined`: the processes the registry quarantined, with why and
//!   since when, so a reopened registry keeps them quarantined. New in
//!   version 2: a version 1 file gets the table (and nothing else changes)
//!   when a registry opens it for writing; read-only inspectors read a
//!   version 1 file as it is, with nothing quarantined.
//!
//! The version is SQLite's `user_version`. A file with any other version is
//! refused before anything writes to it.

use std::time::Duration;

use rusqlite::Connection;

use super::{SqliteOptions, SyncMode};

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The version before [`SCHEMA_VERSION`], which [`upgrade`] brings to it.
pub(crate) const PREVIOUS_VERSION: i64 = 1;

/// What version 2 added.
const QUARANTINED: &str = "
CREATE TABLE quarantined (
    process_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

const TABLES: &str = "
CREATE TABLE declarations (
    hash TEXT PRIMARY KEY,
    event_types TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE processes (
    id TEXT PRIMARY KEY,
    declarations TEXT NOT NULL,
    record TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL DEFAULT 0,
    lease TEXT
) WITHOUT ROWID;
CREATE INDEX processes_by_status ON processes (status, id);
CREATE TABLE events (
    process_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    wake INTEGER NOT NULL,
    replay_key TEXT,
    occurred_at_ms INTEGER NOT NULL,
    payload TEXT NOT NULL,
    semantics TEXT,
    PRIMARY KEY (process_id, sequence)
) WITHOUT ROWID;
CREATE TABLE replay_keys (
    process_id TEXT NOT NULL,
    replay_key TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    payload_hash TEXT NOT NULL,
    PRIMARY KEY (process_id, replay_key)
) WITHOUT ROWID;
CREATE TABLE wake_acks (
    process_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    PRIMARY KEY (process_id, sequence)
) WITHOUT ROWID;
CREATE TABLE grants (
    scope_id TEXT NOT NULL,
    process_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    PRIMARY KEY (scope_id, process_id)
) WITHOUT ROWID;
";

/// What the file says about its own version.
pub(crate) enum Found {
    /// No tables yet: a new file.
    Empty,
    /// A file of this version.
    Current,
    /// A file of [`PREVIOUS_VERSION`], which [`upgrade`] brings to this one.
    Previous,
    /// Another version (or a foreign database).
    Other(i64),
}

/// Reads the version without writing anything.
pub(crate) fn found_version(connection: &Connection) -> rusqlite::Result<Found> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let tables: i64 = connection.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
    Ok(match (version, tables) {
        (0, 0) => Found::Empty,
        (SCHEMA_VERSION, _) => Found::Current,
        (PREVIOUS_VERSION, _) => Found::Previous,
        (other, _) => Found::Other(other),
    })
}

/// Whether the `events` table has the columns this build reads (a file of
/// [`PREVIOUS_VERSION`] from an early build kept each event as one JSON
/// column). Reads nothing but the table's definition.
pub(crate) fn has_event_columns(connection: &Connection) -> rusqlite::Result<bool> {
    let mut statement = connection.prepare("SELECT name FROM pragma_table_info('events')")?;
    let columns: Vec<String> = statement.query_map([], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    let expected =
        ["process_id", "sequence", "event_type", "wake", "replay_key", "occurred_at_ms", "payload", "semantics"];
    Ok(expected.iter().all(|column| columns.iter().any(|found| found == column)))
}

/// Sets up the writer's connection: WAL, the sync mode, bounded WAL growth.
pub(crate) fn configure_writer(connection: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(5))?;
    // Switching to WAL takes a lock another connection may hold a moment.
    let mut attempts = 0;
    loop {
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get::<_, String>(0)) {
            // SQLite answers with the mode it is in: one that cannot run
            // WAL (some file systems) keeps another, and the sync modes'
            // guarantees and the readers' isolation would not hold.
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(mode) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("the file cannot run in WAL mode (SQLite kept journal_mode {mode})").into(),
                ))
            }
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy && attempts < 50 =>
            {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error),
        }
    }
    let synchronous = match options.sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    connection.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA journal_size_limit = {};
         PRAGMA wal_autocheckpoint = 1000;",
        options.journal_size_limit
    ))?;
    Ok(())
}

/// Creates the tables of a new file, in one transaction.
pub(crate) fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!(
        "BEGIN IMMEDIATE; {TABLES} {QUARANTINED} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))
}

/// Brings a file of [`PREVIOUS_VERSION`] to [`SCHEMA_VERSION`], in one
/// transaction: all of it or nothing.
pub(crate) fn upgrade(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!("BEGIN IMMEDIATE; {QUARANTINED} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
}
