//! The shared store: several registry nodes on one PostgreSQL database
//! (feature `postgres`).
//!
//! PostgreSQL orders and keeps the writes; the nodes never talk to each
//! other. Each node keeps its process actors as local serializers and
//! caches (see the runtime's process actor), and this store fences every
//! commit by the version the node planned on, so a node that fell behind
//! commits nothing and plans again.
//!
//! # Who owns what
//!
//! - The **writer task** owns one dedicated connection and drains a queue
//!   of commits from every actor and the supervisor of this node, many per
//!   transaction (`writer`): one round trip per kind of row for the whole
//!   batch, one WAL flush per batch, and one `pg_notify` per batch naming
//!   the processes that got events (ids only, in chunks far below the
//!   8,000-byte payload limit). Commits that notify serialize on a global
//!   lock in PostgreSQL, so batching them keeps that lock off the path of
//!   each call.
//! - A **shared reader** connection serves the single-statement reads
//!   (version probes, records, listings, the grants' version): concurrent
//!   queries are pipelined on it, so many actors probing at once neither
//!   queue for a pooled connection nor cost the server a backend each.
//! - A **pool** of a few connections ([`PostgresOptions::pool_size`], sized
//!   for 2 cores) serves the reads that need a snapshot of several
//!   statements (activation loads, the grants). A read holds its
//!   connection only for its statements, never while a caller is parked.
//! - The **listener task** owns one dedicated connection that `LISTEN`s
//!   (a pooled one could not keep the subscription). It turns
//!   notifications into [`Notice`]s for the registry; when its connection
//!   drops it reconnects with backoff and sends [`Notice::Reconnected`],
//!   after which every parked waiter checks its process again.
//!
//! Every connection sets `lock_timeout`, `statement_timeout` and
//! `idle_in_transaction_session_timeout`.
//!
//! # The schema
//!
//! Tables live in the schema `process_registry`; `migrations/postgres/` in
//! the repository holds one SQL file per version, applied in order on
//! connect under an advisory lock, so nodes starting together do not race
//! (`schema`). A database with a newer version than this build knows is
//! refused with [`RegistryError::StoreVersion`] before anything is written.
//!
//! # What a failed commit means
//!
//! A batch that fails before `COMMIT` is rolled back: every commit in it
//! is answered with the error and nothing of it is in the database (a
//! deadlock or serialization failure is retried, up to three times, first).
//! A failed `COMMIT` leaves the outcome unknown, as with any database
//! client: the commits are answered `Storage`, and the versions make that
//! safe: whatever landed is seen by the next call's version check, which
//! reloads. The store is not poisoned; unlike a local file, the database
//! stays the single source of truth.

mod listener;
mod reads;
mod schema;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;
use tokio_postgres::{Client, Statement};

use super::{
    Changes, Commit, CommitCallback, CommitResult, GrantChange, Notice, Probe, ProcessStore, Recovered, SharedStore,
    StoredProcess,
};
use crate::error::RegistryError;
use crate::events::ProcessEventType;
use crate::model::{DurabilityTier, ProcessRecord};

/// The schema version this build reads and writes.
pub const POSTGRES_SCHEMA_VERSION: i64 = schema::SCHEMA_VERSION;

/// The channel notifications travel on.
const CHANNEL: &str = "process_registry";

/// How to connect a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Pooled connections for reads (the writer and the listener have one
    /// each besides). Default 4.
    pub pool_size: usize,
    /// The most commits in one transaction. Default 1,024.
    pub max_batch: usize,
    /// How long a statement waits for a row lock before failing. Default 5 s.
    pub lock_timeout: Duration,
    /// How long one statement may run. Default 30 s.
    pub statement_timeout: Duration,
    /// How often the LISTEN connection, when quiet, is asked whether it is
    /// alive; one that errors or does not answer within as long again is
    /// replaced as if it had dropped (a half-open connection hears nothing
    /// and would otherwise never fail), and every parked waiter checks its
    /// process again. Default 10 s; between 10 ms and 1 hour, and far
    /// above the round trip to the server, or every beat replaces it.
    pub listener_heartbeat: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 4,
            max_batch: 1024,
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            listener_heartbeat: Duration::from_secs(10),
        }
    }
}

/// The bounds on [`PostgresOptions::listener_heartbeat`].
const MIN_HEARTBEAT: Duration = Duration::from_millis(10);
const MAX_HEARTBEAT: Duration = Duration::from_secs(60 * 60);

/// What the store, its writer and its readers share.
#[derive(Debug)]
pub(crate) struct Inner {
    /// Host and database, for messages (never the password).
    pub(crate) label: String,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) pool: Pool,
    /// The pipelined connection of single-statement reads.
    pub(crate) reader: SharedReader,
    /// Declaration lists read so far, by hash, shared by every record.
    pub(crate) declarations: Mutex<HashMap<String, Arc<Vec<ProcessEventType>>>>,
}

impl Inner {
    pub(crate) fn storage(&self, process_id: &str, message: impl std::fmt::Display) -> RegistryError {
        RegistryError::Storage { process_id: process_id.to_owned(), message: format!("{}: {message}", self.label) }
    }

    /// The cached declaration list of `hash`.
    pub(crate) fn declaration(&self, hash: &str) -> Option<Arc<Vec<ProcessEventType>>> {
        self.declarations.lock().unwrap_or_else(PoisonError::into_inner).get(hash).cloned()
    }

    pub(crate) fn remember_declaration(&self, hash: String, event_types: Arc<Vec<ProcessEventType>>) {
        self.declarations.lock().unwrap_or_else(PoisonError::into_inner).insert(hash, event_types);
    }
}

/// The store on PostgreSQL: [`DurabilityTier::Durable`] (a commit is
/// answered after the server's `COMMIT`, which flushes its WAL), shared by
/// every node connected to the same database.
#[derive(Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
    jobs: mpsc::UnboundedSender<writer::Job>,
    notices: Mutex<Option<mpsc::UnboundedReceiver<Notice>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// TCP keepalives short enough that a connection a NAT, a load balancer or
/// a failover dropped without a word fails in about a minute (30 s idle,
/// then 3 probes 10 s apart) instead of after the system's two hours:
/// every connection of the store (reader, writer, pool, listener) then
/// errors and is replaced. Settings the URL makes are kept.
fn keep_alive(config: &mut tokio_postgres::Config) {
    const LIBRARY_DEFAULT_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if config.get_keepalives_idle() == LIBRARY_DEFAULT_IDLE {
        config.keepalives_idle(Duration::from_secs(30));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(10));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

/// Session settings every connection of the store starts with.
fn session_options(options: &PostgresOptions) -> String {
    format!(
        "-c lock_timeout={} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
        options.lock_timeout.as_millis(),
        options.statement_timeout.as_millis(),
        options.statement_timeout.as_millis().saturating_mul(2)
    )
}

/// Host and database of `config`, for messages.
fn label_of(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_default();
    format!("postgres {host}/{}", config.get_dbname().unwrap_or_default())
}

impl PostgresStore {
    /// Connects to the database `url` names (a `postgres://` URL or
    /// `key=value` pairs, as libpq reads them), creates or migrates its
    /// schema under an advisory lock, and starts the writer and the
    /// listener. Must run inside a tokio runtime.
    ///
    /// Waits on: connecting (three connections plus the pool's first), the
    /// migration lock (held by another node while it migrates), and the
    /// `LISTEN`, so a waiter parked after this returns hears every later
    /// commit. Errors: `StoreOpen` when the URL does not parse or the
    /// server cannot be reached, `StoreVersion` for a database written by a
    /// newer build (nothing is written), `InvalidConfig` for a pool size or
    /// batch bound of 0. Cancel safety: a dropped future leaves the
    /// schema either migrated or not (each migration is one transaction)
    /// and no task running.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<Self, RegistryError> {
        if options.pool_size == 0 || options.max_batch == 0 {
            return Err(RegistryError::InvalidConfig {
                reason: "the PostgreSQL pool size and batch bound must be at least 1".to_owned(),
            });
        }
        if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&options.listener_heartbeat) {
            return Err(RegistryError::InvalidConfig {
                reason: format!(
                    "the PostgreSQL listener heartbeat is {:?}; it must be between {MIN_HEARTBEAT:?} and {MAX_HEARTBEAT:?}",
                    options.listener_heartbeat
                ),
            });
        }
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|error: tokio_postgres::Error| RegistryError::StoreOpen {
                path: "postgres".to_owned(),
                message: format!("the URL does not parse: {error}"),
            })?;
        config.options(session_options(&options));
        if config.get_application_name().is_none() {
            config.application_name("process-registry");
        }
        keep_alive(&mut config);
        let label = label_of(&config);
        let open_error = |message: String| RegistryError::StoreOpen { path: label.clone(), message };

        let writer_client = schema::connect(&config).await.map_err(|error| open_error(error.to_string()))?;
        schema::migrate(&writer_client, &label).await?;

        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .build()
            .map_err(|error| open_error(format!("the connection pool: {error}")))?;
        // Reach the server through the pool once, so a bad pool setup fails here.
        drop(pool.get().await.map_err(|error| open_error(format!("the connection pool: {error}")))?);

        let inner = Arc::new(Inner {
            label: label.clone(),
            config,
            pool,
            reader: SharedReader::default(),
            declarations: Mutex::default(),
        });
        let (notice_sender, notices) = mpsc::unbounded_channel();
        let listener =
            listener::start(Arc::clone(&inner), notice_sender, options.listener_heartbeat).await.map_err(open_error)?;
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(writer::run(writer_client, queue, Arc::clone(&inner), options.max_batch));
        Ok(Self { inner, jobs, notices: Mutex::new(Some(notices)), listener })
    }
}

#[async_trait]
impl ProcessStore for PostgresStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Durable
    }

    async fn recover(&self) -> Result<Recovered, RegistryError> {
        let records = reads::list_records(&self.inner, false).await?;
        let (_, grants) = reads::load_grants(&self.inner).await?;
        let quarantined = reads::quarantined(&self.inner).await?;
        Ok(Recovered { records, grants, quarantined })
    }

    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
        reads::load_process(&self.inner, process_id).await
    }

    fn submit(&self, commit: Commit, later: CommitCallback) -> Option<CommitResult> {
        match self.jobs.send(writer::Job::Commit(commit, later)) {
            Ok(()) => None,
            Err(mpsc::error::SendError(job)) => {
                // The writer is gone (closed): answer without panicking.
                job.refuse(self.inner.storage("", "the store is closed"));
                None
            }
        }
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }

    async fn close(&self) -> Result<(), RegistryError> {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.jobs.send(writer::Job::Close(done)).is_ok() {
            let _ = closed.await;
        }
        self.listener.abort();
        self.inner.pool.close();
        Ok(())
    }
}

#[async_trait]
impl SharedStore for PostgresStore {
    async fn probe(&self, process_id: &str) -> Result<Option<Probe>, RegistryError> {
        reads::probe(&self.inner, process_id).await
    }

    async fn load_changes(&self, process_id: &str, after: u64) -> Result<Option<Changes>, RegistryError> {
        reads::load_changes(&self.inner, process_id, after).await
    }

    async fn fetch_records(&self, process_ids: &[String]) -> Result<Vec<Arc<ProcessRecord>>, RegistryError> {
        reads::fetch_records(&self.inner, process_ids).await
    }

    async fn list_records(&self, running_only: bool) -> Result<Vec<Arc<ProcessRecord>>, RegistryError> {
        reads::list_records(&self.inner, running_only).await
    }

    async fn grants_version(&self) -> Result<u64, RegistryError> {
        reads::grants_version(&self.inner).await
    }

    async fn load_grants(&self) -> Result<(u64, Vec<GrantChange>), RegistryError> {
        reads::load_grants(&self.inner).await
    }

    fn notices(&self) -> Option<mpsc::UnboundedReceiver<Notice>> {
        self.notices.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// One connection's prepared statements, by their SQL.
#[derive(Default)]
pub(crate) struct Statements {
    prepared: std::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl Statements {
    /// The statement for `sql`, prepared on first use.
    pub(crate) async fn get(&self, client: &Client, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        let cached = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(sql).cloned();
        if let Some(statement) = cached {
            return Ok(statement);
        }
        let statement = client.prepare(sql).await?;
        self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sql, statement.clone());
        Ok(statement)
    }
}

/// The connection single-statement reads share: tokio-postgres pipelines
/// concurrent queries on one connection, so a thousand actors probing
/// their versions at once wait for no pooled connection and cost the
/// server one backend. Reconnected on first use after it drops.
#[derive(Default)]
pub(crate) struct SharedReader {
    current: tokio::sync::Mutex<Option<Arc<(tokio_postgres::Client, Statements)>>>,
}

impl std::fmt::Debug for SharedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReader").finish_non_exhaustive()
    }
}

impl SharedReader {
    /// The live connection, connecting when there is none.
    pub(crate) async fn get(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Arc<(tokio_postgres::Client, Statements)>, tokio_postgres::Error> {
        let mut current = self.current.lock().await;
        if let Some(live) = current.as_ref().filter(|live| !live.0.is_closed()) {
            return Ok(Arc::clone(live));
        }
        let fresh = Arc::new((schema::connect(config).await?, Statements::default()));
        *current = Some(Arc::clone(&fresh));
        Ok(fresh)
    }
}

/// Registry numbers (sequences, epoch ms, versions) as PostgreSQL `BIGINT`s;
/// they fit far below `i64::MAX`, and larger ones are stored saturated.
pub(crate) fn to_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `BIGINT` read back; negative values (never written) read as 0.
pub(crate) fn from_int(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
