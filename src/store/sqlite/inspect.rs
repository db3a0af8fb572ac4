//! Read-only inspection of a store file, for operators and their tools
//! (the `process-registry` CLI is a thin printer over this).
//!
//! [`SqliteInspector::open_read_only`] opens the database with
//! `SQLITE_OPEN_READ_ONLY` and nothing else: it never takes the `PATH-lock`
//! file, never writes the database and never checkpoints its WAL, so it may
//! run while a registry holds the file. WAL mode lets a reader see the last
//! committed state without blocking the writer or being blocked by it.
//! (Like every WAL reader, SQLite may create the `-wal` and `-shm`
//! companions when they are absent: the shared-memory index is how readers
//! and the writer agree on what is committed.)
//!
//! Rows are decoded by the same code that recovers a registry (`rows`), so
//! the file format is read in one place.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use super::rows;
use super::schema::{self, Found};
use crate::error::RegistryError;
use crate::events::ProcessEvent;
use crate::model::{
    ProcessHandleDescriptor, ProcessLease, ProcessRecord, ProcessStatus, ProcessStatusFilter, SessionScope,
    SessionScopeId,
};
use crate::rules::lease::LeaseState;

/// How long a read waits for a lock the writer holds a moment (WAL readers
/// wait only while the writer restarts or truncates the WAL).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A process's status as the store keeps it, without the await output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredStatus {
    /// Not terminal yet.
    Running,
    /// Ended successfully.
    Completed,
    /// Ended in failure.
    Failed,
    /// Ended by cancellation.
    Cancelled,
}

impl StoredStatus {
    /// The status that `filter` selects, `None` for [`ProcessStatusFilter::Any`].
    pub fn from_filter(filter: ProcessStatusFilter) -> Option<Self> {
        match filter {
            ProcessStatusFilter::Running => Some(Self::Running),
            ProcessStatusFilter::Completed => Some(Self::Completed),
            ProcessStatusFilter::Failed => Some(Self::Failed),
            ProcessStatusFilter::Cancelled => Some(Self::Cancelled),
            ProcessStatusFilter::Any => None,
        }
    }

    /// The lowercase name (`running`, `completed`, `failed`, `cancelled`),
    /// as the file and the serde form spell it.
    pub fn as_str(self) -> &'static str {
        rows::stored_status_name(self)
    }
}

impl From<&ProcessStatus> for StoredStatus {
    fn from(status: &ProcessStatus) -> Self {
        match status {
            ProcessStatus::Running => Self::Running,
            ProcessStatus::Completed { .. } => Self::Completed,
            ProcessStatus::Failed { .. } => Self::Failed,
            ProcessStatus::Cancelled { .. } => Self::Cancelled,
        }
    }
}

impl fmt::Display for StoredStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many processes the file holds in each status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// Non-terminal processes.
    pub running: u64,
    /// Completed processes.
    pub completed: u64,
    /// Failed processes.
    pub failed: u64,
    /// Cancelled processes.
    pub cancelled: u64,
}

impl StatusCounts {
    /// Every process the file holds.
    pub fn total(&self) -> u64 {
        self.running.saturating_add(self.completed).saturating_add(self.failed).saturating_add(self.cancelled)
    }

    /// The count of one status.
    pub fn of(&self, status: StoredStatus) -> u64 {
        match status {
            StoredStatus::Running => self.running,
            StoredStatus::Completed => self.completed,
            StoredStatus::Failed => self.failed,
            StoredStatus::Cancelled => self.cancelled,
        }
    }
}

/// One process as a listing shows it, read from its row's columns (the
/// record itself is not parsed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSummary {
    /// The process id.
    pub id: String,
    /// Its status.
    pub status: StoredStatus,
    /// The sequence of its last event (0 for an empty log).
    pub last_sequence: u64,
    /// When it last changed (epoch ms).
    pub updated_at_ms: u64,
    /// Its current lease, if one was granted and not released (it may have
    /// expired: compare `expires_at_epoch_ms` with the time).
    pub lease: Option<ProcessLease>,
    /// The last fencing token handed out (0 before the first claim).
    pub last_fencing_token: u64,
}

/// A grant of one process to a session scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGrant {
    /// The scope holding the grant.
    pub scope: SessionScope,
    /// How the scope presents the process.
    pub descriptor: ProcessHandleDescriptor,
}

impl StoredGrant {
    /// The scope's id, the key grants are stored under.
    pub fn scope_id(&self) -> SessionScopeId {
        self.scope.id()
    }
}

/// Everything the file holds about one process, as one consistent snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessDetail {
    /// Its record (with its event types).
    pub record: ProcessRecord,
    /// The sequence of its last event (0 for an empty log).
    pub last_sequence: u64,
    /// Its events, ascending: all of them, or the last ones asked for.
    pub events: Vec<ProcessEvent>,
    /// Its lease: the current one, if any, and the last fencing token.
    pub lease: LeaseState,
    /// Its grants, by scope id.
    pub grants: Vec<StoredGrant>,
}

/// A read-only view of a store file. See the module docs for what it
/// never does to the file.
#[derive(Debug)]
pub struct SqliteInspector {
    path: String,
    connection: Connection,
    version: i64,
}

impl SqliteInspector {
    /// Opens the store at `path` read-only, after checking that it is a
    /// store of [`SQLITE_SCHEMA_VERSION`](super::SQLITE_SCHEMA_VERSION).
    ///
    /// Blocks the calling thread on the disk (it reads the header). Works
    /// while a registry holds the file. Errors:
    /// [`RegistryError::StoreVersion`] for another schema version (or a
    /// foreign database), [`RegistryError::StoreOpen`] for a missing file, a
    /// directory, a file that is not a database, a truncated one or an empty
    /// database.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let open_error = |message: String| RegistryError::StoreOpen { path: shown.clone(), message };
        // SQLite's own message for both is "unable to open database file".
        let metadata = std::fs::metadata(path).map_err(|error| open_error(error.to_string()))?;
        if metadata.is_dir() {
            return Err(open_error("it is a directory, not a store file".to_owned()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(path, flags).map_err(|error| open_error(error.to_string()))?;
        let configured = connection
            .busy_timeout(BUSY_TIMEOUT)
            // A read-only connection cannot checkpoint anyway; say so twice.
            .and_then(|()| connection.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map(drop))
            .and_then(|()| connection.pragma_update(None, "query_only", true));
        configured.map_err(|error| open_error(error.to_string()))?;
        let version =
            match schema::found_version(&connection).map_err(|error| open_error(first_read_failure(&error)))? {
                Found::Current => schema::SCHEMA_VERSION,
                // Read as it is: nothing a version 1 file holds changed meaning.
                Found::Previous => schema::PREVIOUS_VERSION,
                Found::Empty => return Err(open_error("an empty database, not a process-registry store".to_owned())),
                Found::Other(found) => {
                    return Err(RegistryError::StoreVersion { path: shown, found, supported: schema::SCHEMA_VERSION })
                }
            };
        Ok(Self { path: shown, connection, version })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's schema version:
    /// [`SQLITE_SCHEMA_VERSION`](super::SQLITE_SCHEMA_VERSION), or the one
    /// before it for a file no registry has opened since it was upgraded
    /// (an inspector reads it as it is and never upgrades it).
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// How many processes the file holds in each status. Cost: one pass
    /// over the status index.
    pub fn counts(&self) -> Result<StatusCounts, RegistryError> {
        rows::count_by_status(&self.connection).map_err(|message| self.read_error("", message))
    }

    /// Up to `limit` processes (all when `None`) that `status` selects, ids
    /// ascending. Cost: O(listed) rows; no record is parsed.
    pub fn list(&self, status: ProcessStatusFilter, limit: Option<u64>) -> Result<Vec<ProcessSummary>, RegistryError> {
        rows::read_summaries(&self.connection, StoredStatus::from_filter(status), limit)
            .map_err(|message| self.read_error("", message))
    }

    /// Everything the file holds about `process_id` (its whole log), or
    /// `None` when the file does not hold it.
    pub fn process(&self, process_id: &str) -> Result<Option<ProcessDetail>, RegistryError> {
        self.detail(process_id, None)
    }

    /// [`Self::process`] with only the last `last_events` events of the log.
    pub fn process_with_last_events(
        &self,
        process_id: &str,
        last_events: u64,
    ) -> Result<Option<ProcessDetail>, RegistryError> {
        self.detail(process_id, Some(last_events))
    }

    fn detail(&self, process_id: &str, last_events: Option<u64>) -> Result<Option<ProcessDetail>, RegistryError> {
        let fail = |message: String| self.read_error(process_id, message);
        // One read transaction: the record, the log, the lease and the
        // grants are of one commit, even while a registry writes.
        let snapshot = self.connection.unchecked_transaction().map_err(|error| fail(error.to_string()))?;
        let mut declarations = HashMap::new();
        let Some(row) = rows::read_process_row(&snapshot, process_id, &mut declarations).map_err(fail)? else {
            return Ok(None);
        };
        let after = match last_events {
            Some(last) => row.last_sequence.saturating_sub(last),
            None => 0,
        };
        let events = rows::read_events_after(&snapshot, process_id, after, row.last_sequence).map_err(fail)?;
        let grants = rows::read_grants_of(&snapshot, process_id).map_err(fail)?;
        // Dropping the transaction ends it (a rollback: it wrote nothing).
        drop(snapshot);
        Ok(Some(ProcessDetail {
            record: std::sync::Arc::unwrap_or_clone(row.record),
            last_sequence: row.last_sequence,
            events: events.into_iter().map(std::sync::Arc::unwrap_or_clone).collect(),
            lease: row.lease,
            grants,
        }))
    }

    fn read_error(&self, process_id: &str, message: String) -> RegistryError {
        RegistryError::Storage { process_id: process_id.to_owned(), message: format!("{}: {message}", self.path) }
    }
}

/// What the first read's failure means. A WAL reader needs the `-wal` and
/// `-shm` files; when they are missing and the directory is not writable
/// (or `-shm` is not), SQLite says only "attempt to write a readonly
/// database", which is no help to someone who asked to read.
fn first_read_failure(error: &rusqlite::Error) -> String {
    if error.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly) {
        format!(
            "{error}: a WAL reader needs the -wal and -shm files beside the database, which could not be \
             created or opened here; run as a user who may write the directory, or inspect a copy"
        )
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_through_the_column_and_serde() {
        for status in [StoredStatus::Running, StoredStatus::Completed, StoredStatus::Failed, StoredStatus::Cancelled] {
            assert_eq!(rows::status_from_name(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), serde_json::json!(status.as_str()));
        }
        assert_eq!(rows::status_from_name("paused"), None);
    }

    #[test]
    fn a_read_only_failure_says_what_the_reader_needs() {
        let failure = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("attempt to write a readonly database".to_owned()),
        );
        let message = first_read_failure(&failure);
        assert!(message.starts_with("attempt to write a readonly database: "), "{message}");
        assert!(message.contains("-wal and -shm"), "{message}");
        let other = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB), None);
        assert_eq!(first_read_failure(&other), other.to_string());
    }

    #[test]
    fn the_filter_any_selects_every_status() {
        assert_eq!(StoredStatus::from_filter(ProcessStatusFilter::Any), None);
        assert_eq!(StoredStatus::from_filter(ProcessStatusFilter::Failed), Some(StoredStatus::Failed));
    }
}
