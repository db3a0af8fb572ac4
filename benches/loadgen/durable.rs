//! The durable store's figures (`--store sqlite`), each stated against what
//! the disk allows in the same run.
//!
//! The run first measures the disk: `fdatasync` after a 4 KiB write, in the
//! directory the store lives in, [`Durable::fsync_samples`] times; its median
//! `L` bounds a store that syncs every commit to `callers in flight / L`
//! commits per second. Then:
//!
//! - `sqlite_append_64_processes`: 64 processes, one sequential appender
//!   each, against `0.8 x 64 / L`, and against the same store in
//!   `CommitMode::PerCall` (one transaction and fsync per call): >= 20x.
//! - `sqlite_append_1_process_64_callers`: 64 concurrent appenders on one
//!   process (the actor pipelines them): against `0.5 x 64 / L`.
//! - `sqlite_append_sequential`: one appender: against `0.8 x 1 / L`.
//!   `sqlite_append_sequential_wal_reused` is the same after
//!   [`Durable::wal_warm_up`] untimed appends: a fresh file's WAL grows
//!   with every commit (an fsync that also flushes the file's size), while
//!   a registry that has run a while reuses it from its start after each
//!   checkpoint, the overwrite `L` measures.
//! - `sqlite_read_*`: reads of an active process on SQLite against the same
//!   reads on the memory store (<= 1.2x): they never touch the disk. Both
//!   registries are filled alike and their samples taken in alternating
//!   rounds.
//! - `sqlite_reopen_*`: a file of [`Durable::reopen_processes`] processes
//!   holding [`Durable::reopen_events`] events in all, reopened in a child
//!   process: the time from `open` to the first answered call (< 1 s), the
//!   RSS it holds then against a memory store holding the same processes
//!   with no events (another child), and the activation of processes with
//!   10,000-event logs (p50 < 20 ms).
//! - `sqlite_relaxed_vs_per_call`: `SyncMode::Normal` with group commit
//!   against `SyncMode::Normal` with one transaction per call (the seed
//!   project's way of writing), 64 appenders: >= 10x.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{
    ActorProcessRegistry, CommitMode, ProcessListFilter, ProcessRegistry, RegistryConfig, SqliteOptions, SqliteStore,
    SyncMode,
};
use serde::{Deserialize, Serialize};

use crate::args::{Args, DURABLE_PHASE_FLAG};
use crate::report::per_second;
use crate::support::workload::{register, registration, runtime, signal, tick, TICK};
use crate::sys::{page_size, rss_bytes, run_child, trim_heap};
use crate::Result;

/// The line prefix a durable child reports with.
const DURABLE_REPORT_PREFIX: &str = "LOADGEN-DURABLE ";
/// Events in each of the logs the activation figure opens.
const BIG_LOG: u64 = 10_000;

/// How much work the durable figures do.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Durable {
    pub rounds: usize,
    pub fsync_samples: u64,
    /// Appends of each of the 64 sequential appenders, per round.
    pub appends_per_appender: u64,
    /// The same, in the one-transaction-per-call mode (slow by design).
    pub per_call_appends_per_appender: u64,
    /// Appends of the one sequential appender, per round.
    pub sequential_appends: u64,
    /// Appends made before the clock starts in the row that measures a
    /// WAL already reused from its start (enough to wrap it a few times).
    pub wal_warm_up: u64,
    /// Events in the log the read figures read.
    pub read_log: u64,
    pub read_samples: u64,
    /// Processes `list_processes` lists in the read figure.
    pub listed: u64,
    pub reopen_processes: u64,
    pub reopen_events: u64,
    /// Processes with a [`BIG_LOG`]-event log, activated one by one.
    pub big_logs: u64,
}

impl Durable {
    pub fn new(args: &Args) -> Self {
        let mut sizes = if args.smoke {
            Self {
                rounds: 1,
                fsync_samples: 10,
                appends_per_appender: 3,
                per_call_appends_per_appender: 1,
                sequential_appends: 5,
                wal_warm_up: 10,
                read_log: 100,
                read_samples: 10,
                listed: 20,
                reopen_processes: 100,
                reopen_events: 1_000,
                big_logs: 1,
            }
        } else if args.quick {
            Self {
                rounds: 2,
                fsync_samples: 100,
                appends_per_appender: 50,
                per_call_appends_per_appender: 5,
                sequential_appends: 100,
                wal_warm_up: 1_500,
                read_log: 1_000,
                read_samples: 200,
                listed: 1_000,
                reopen_processes: 10_000,
                reopen_events: 100_000,
                big_logs: 3,
            }
        } else {
            Self {
                rounds: 3,
                fsync_samples: 300,
                appends_per_appender: 200,
                per_call_appends_per_appender: 10,
                sequential_appends: 500,
                wal_warm_up: 1_500,
                read_log: 10_000,
                read_samples: 2_000,
                listed: 1_000,
                reopen_processes: 100_000,
                reopen_events: 1_000_000,
                big_logs: 10,
            }
        };
        if let Some(rounds) = args.rounds {
            sizes.rounds = rounds.max(1);
        }
        if let Some(processes) = args.processes {
            sizes.reopen_processes = processes.max(1);
            sizes.reopen_events = sizes.reopen_events.max(processes);
        }
        sizes
    }
}

/// One durable figure: what was measured against what it is held to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DurableRow {
    pub id: String,
    pub label: String,
    pub measured: f64,
    pub unit: String,
    /// What `measured` is compared with (a limit or another mode's figure).
    pub reference: f64,
    pub reference_label: String,
    /// measured / reference.
    pub ratio: f64,
    /// The target on `ratio` (or on `measured`, as the text says).
    pub target: String,
    pub reached: bool,
}

pub(crate) fn row(
    id: &str,
    label: &str,
    (measured, unit): (f64, &str),
    (reference, reference_label): (f64, String),
    target: &str,
    reached: impl Fn(f64, f64) -> bool,
) -> DurableRow {
    let ratio = if reference > 0.0 { measured / reference } else { f64::NAN };
    DurableRow {
        id: id.to_owned(),
        label: label.to_owned(),
        measured,
        unit: unit.to_owned(),
        reference,
        reference_label,
        ratio,
        target: target.to_owned(),
        reached: reached(measured, ratio),
    }
}

/// The median of `values` (sorted here).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median time of a 4 KiB overwrite plus `fdatasync` in `directory`:
/// the cheapest durable write the disk allows (no size change, so no
/// metadata to flush), as a WAL that is reused from its start does.
pub(crate) fn fsync_latency(directory: &Path, samples: u64) -> Result<Duration> {
    use std::os::unix::fs::FileExt as _;
    let path = directory.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let block = vec![0x5au8; 4096];
    file.write_all(&block)?;
    file.sync_all()?;
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        file.write_all_at(&block, 0)?;
        file.sync_data()?;
        times.push(started.elapsed().as_secs_f64());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(Duration::from_secs_f64(median(times)))
}

pub(crate) async fn open(path: &Path, sync: SyncMode, commit: CommitMode) -> Result<ActorProcessRegistry> {
    let options = SqliteOptions::default().with_sync(sync).with_commit(commit);
    Ok(ActorProcessRegistry::open_with(path, options, RegistryConfig::default()).await?)
}

/// `appenders` tasks, each appending `per_task` events to its own process
/// (`one_process`: all to one); appends/s, and how far `transactions` moved
/// while they appended (the registrations before are not counted).
pub(crate) async fn append_rate(
    registry: &Arc<dyn ProcessRegistry>,
    prefix: &str,
    appenders: u64,
    per_task: u64,
    one_process: bool,
    transactions: impl Fn() -> u64,
) -> Result<(f64, u64)> {
    let ids: Vec<String> = (0..if one_process { 1 } else { appenders }).map(|i| format!("{prefix}-{i}")).collect();
    for id in &ids {
        register(registry, id).await?;
    }
    let before = transactions();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..appenders {
        let registry = Arc::clone(registry);
        let id = ids.get(if one_process { 0 } else { task as usize }).cloned().unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_task {
                registry.append_event(&id, tick(n)).await.map_err(|err| format!("append: {err}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|err| format!("an appender failed: {err}"))??;
    }
    Ok((per_second(appenders * per_task, started.elapsed()), transactions().saturating_sub(before)))
}

/// Medians over rounds of [`append_rate`] on a fresh file per round, and
/// of the appends each transaction (so each fsync) carried. Each round
/// first makes `warm_up` sequential appends to a process of its own,
/// untimed (0: none, the WAL grows from empty while the clock runs).
async fn rounds_of(
    directory: &Path,
    name: &str,
    sizes: &Durable,
    (sync, commit): (SyncMode, CommitMode),
    (appenders, per_task, one_process): (u64, u64, bool),
    warm_up: u64,
) -> Result<(f64, f64)> {
    let mut rates = Vec::new();
    let mut per_transaction = Vec::new();
    for round in 0..sizes.rounds {
        let path = directory.join(format!("{name}-{round}.db"));
        let options = SqliteOptions::default().with_sync(sync).with_commit(commit);
        let store = Arc::new(SqliteStore::open(&path, options)?);
        let registry =
            ActorProcessRegistry::start(RegistryConfig::default().with_store(Arc::clone(&store) as _)).await?;
        let shared: Arc<dyn ProcessRegistry> = Arc::new(registry.clone());
        if warm_up > 0 {
            append_rate(&shared, &format!("{name}-warm-up"), 1, warm_up, false, || 0).await?;
        }
        let rate = append_rate(&shared, name, appenders, per_task, one_process, || store.transactions()).await?;
        rates.push(rate.0);
        per_transaction.push((appenders * per_task) as f64 / rate.1.max(1) as f64);
        registry.shutdown().await;
    }
    Ok((median(rates), median(per_transaction)))
}

/// Times `samples` calls of `read`, p50 in microseconds.
pub(crate) async fn read_p50<F, Fut>(samples: u64, read: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    Ok(median(read_times(samples, read).await?))
}

/// Times `samples` calls of `read`, in microseconds.
async fn read_times<F, Fut>(samples: u64, mut read: F) -> Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut times = Vec::new();
    for _ in 0..samples {
        let started = Instant::now();
        read().await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    Ok(times)
}

/// Rounds the read figures alternate over, so that a drift of the machine
/// during the run (this one's memory speed varies by half) lands on both
/// stores alike instead of on whichever ran second.
const READ_ROUNDS: u64 = 10;

/// Fills `registry` for [`read_round`]: a process with `read_log` events
/// (every tenth a signal) and `listed` processes in all.
async fn fill_read_fixture(registry: &Arc<dyn ProcessRegistry>, sizes: &Durable) -> Result<()> {
    register(registry, "reads").await?;
    let mut tasks = Vec::new();
    // Filled by 16 concurrent appenders: the order of types does not matter.
    for task in 0..16u64 {
        let registry = Arc::clone(registry);
        let count = sizes.read_log / 16 + u64::from(task < sizes.read_log % 16);
        tasks.push(tokio::spawn(async move {
            for n in 0..count {
                let request = if n % 10 == 0 { signal(n) } else { tick(n) };
                registry.append_event("reads", request).await.map_err(|err| format!("fill: {err}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|err| format!("a filler failed: {err}"))??;
    }
    for i in 1..sizes.listed {
        register(registry, &format!("listed-{i}")).await?;
    }
    Ok(())
}

/// One round of the five read figures on a filled registry: a
/// [`READ_ROUNDS`]th of the samples of each, appended to `times`.
async fn read_round(registry: &Arc<dyn ProcessRegistry>, sizes: &Durable, times: &mut [Vec<f64>; 5]) -> Result<()> {
    let log = sizes.read_log;
    let samples = (sizes.read_samples / READ_ROUNDS).max(1);
    let [tail, count, recent, get, list] = times;
    tail.extend(
        read_times(samples, || async {
            let events = registry.events_after("reads", log.saturating_sub(10)).await?;
            expect(events.len() as u64 == log.min(10), "events_after tail")
        })
        .await?,
    );
    count.extend(
        read_times(samples, || async {
            registry.count_events_through("reads", TICK, log / 2).await?;
            Ok(())
        })
        .await?,
    );
    recent.extend(
        read_times(samples, || async {
            expect(registry.recent_events("reads", 10).await?.len() as u64 == log.min(10), "recent_events")
        })
        .await?,
    );
    get.extend(read_times(samples, || async { expect(registry.get_process("reads").await.is_some(), "get") }).await?);
    list.extend(
        read_times((samples / 100).max(1), || async {
            let filter = ProcessListFilter::default();
            expect(registry.list_processes(&filter).await?.len() as u64 == sizes.listed, "list_processes")
        })
        .await?,
    );
    Ok(())
}

fn expect(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what} returned the wrong number of items").into())
    }
}

/// What the reopen child measured.
#[derive(Debug, Serialize, Deserialize)]
struct ReopenReport {
    first_answer_ms: f64,
    rss_bytes: u64,
    activation_p50_ms: f64,
    activation_p99_ms: f64,
}

/// What the memory child measured.
#[derive(Debug, Serialize, Deserialize)]
struct MemoryReport {
    rss_bytes: u64,
}

/// Builds the reopen fixture: `processes` processes holding `events` events
/// in all, plus `big` processes with [`BIG_LOG`] events each (relaxed sync:
/// this is the fixture, not a figure).
async fn reopen_fixture(path: &Path, sizes: &Durable) -> Result<()> {
    let registry = open(path, SyncMode::Normal, CommitMode::default()).await?;
    let shared: Arc<dyn ProcessRegistry> = Arc::new(registry.clone());
    let per_process = (sizes.reopen_events / sizes.reopen_processes).max(1);
    let tasks_n = 64u64;
    let mut tasks = Vec::new();
    for task in 0..tasks_n {
        let registry = Arc::clone(&shared);
        let processes = sizes.reopen_processes;
        tasks.push(tokio::spawn(async move {
            let mut i = task;
            while i < processes {
                let id = format!("r-{i}");
                register(&registry, &id).await?;
                for n in 0..per_process {
                    registry.append_event(&id, tick(n)).await.map_err(|err| format!("fixture append: {err}"))?;
                }
                i += tasks_n;
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|err| format!("a fixture task failed: {err}"))??;
    }
    for big in 0..sizes.big_logs {
        let id = format!("big-{big}");
        register(&shared, &id).await?;
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let registry = Arc::clone(&shared);
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                for n in (task..BIG_LOG).step_by(16) {
                    registry.append_event(&id, tick(n)).await.map_err(|err| format!("big append: {err}"))?;
                }
                Ok::<_, String>(())
            }));
        }
        for task in tasks {
            task.await.map_err(|err| format!("a big-log task failed: {err}"))??;
        }
    }
    registry.shutdown().await;
    Ok(())
}

/// The child side: `reopen PATH BIG` or `memory N`.
pub fn durable_phase(words: &[String]) -> Result<()> {
    let runtime = runtime()?;
    let page = page_size();
    let report = match words {
        [what, path, big] if what == "reopen" => {
            let big: u64 = big.parse()?;
            let path = PathBuf::from(path);
            let report = runtime.block_on(async move {
                let before = rss_bytes(page)?;
                let started = Instant::now();
                let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await?;
                registry.events_after("r-0", 0).await?;
                let first_answer_ms = started.elapsed().as_secs_f64() * 1e3;
                trim_heap();
                let rss = rss_bytes(page)?.saturating_sub(before);
                let mut times = Vec::new();
                for i in 0..big {
                    let started = Instant::now();
                    registry.count_events_through(&format!("big-{i}"), TICK, 0).await?;
                    times.push(started.elapsed().as_secs_f64() * 1e3);
                }
                times.sort_by(f64::total_cmp);
                let p99 = times.get(times.len().saturating_sub(1) * 99 / 100).copied().unwrap_or(f64::NAN);
                registry.shutdown().await;
                Ok::<_, crate::BoxError>(ReopenReport {
                    first_answer_ms,
                    rss_bytes: rss,
                    activation_p50_ms: median(times),
                    activation_p99_ms: p99,
                })
            })?;
            serde_json::to_string(&report)?
        }
        [what, processes] if what == "memory" => {
            let processes: u64 = processes.parse()?;
            let report = runtime.block_on(async move {
                let before = rss_bytes(page)?;
                let registry = ActorProcessRegistry::start(RegistryConfig::default()).await?;
                let shared: Arc<dyn ProcessRegistry> = Arc::new(registry.clone());
                for i in 0..processes {
                    shared.register_process(registration(&format!("r-{i}"))).await?;
                }
                trim_heap();
                let rss = rss_bytes(page)?.saturating_sub(before);
                registry.shutdown().await;
                Ok::<_, crate::BoxError>(MemoryReport { rss_bytes: rss })
            })?;
            serde_json::to_string(&report)?
        }
        _ => return Err(format!("{DURABLE_PHASE_FLAG} takes `reopen PATH BIG` or `memory N`").into()),
    };
    println!("{DURABLE_REPORT_PREFIX}{report}");
    Ok(())
}

/// Runs every durable figure; the rows in the order of the module docs.
pub fn run_durable(sizes: &Durable) -> Result<Vec<DurableRow>> {
    let directory = tempfile::tempdir()?;
    let dir = directory.path();
    let fsync = fsync_latency(dir, sizes.fsync_samples)?;
    let per_fsync = 1.0 / fsync.as_secs_f64();
    let fsync_ms = fsync.as_secs_f64() * 1e3;
    eprintln!("loadgen: fdatasync on {}: p50 {fsync_ms:.3} ms", dir.display());
    let runtime = runtime()?;
    let full = (SyncMode::Full, CommitMode::default());
    let full_per_call = (SyncMode::Full, CommitMode::PerCall);
    let mut rows = Vec::new();

    let (grouped, per_call, one_process, sequential, reused) = runtime.block_on(async {
        let grouped = rounds_of(dir, "g64", sizes, full, (64, sizes.appends_per_appender, false), 0).await?;
        let per_call =
            rounds_of(dir, "p64", sizes, full_per_call, (64, sizes.per_call_appends_per_appender, false), 0).await?;
        let one_process = rounds_of(dir, "c64", sizes, full, (64, sizes.appends_per_appender, true), 0).await?;
        let sequential = rounds_of(dir, "s1", sizes, full, (1, sizes.sequential_appends, false), 0).await?;
        let reused = rounds_of(dir, "w1", sizes, full, (1, sizes.sequential_appends, false), sizes.wal_warm_up).await?;
        Ok::<_, crate::BoxError>((grouped, per_call, one_process, sequential, reused))
    })?;
    let ((grouped, grouped_each), (per_call, _)) = (grouped, per_call);
    let ((one_process, one_process_each), (sequential, sequential_each)) = (one_process, sequential);
    let limit = |callers: f64| (callers * per_fsync, format!("{callers} / fsync ({fsync_ms:.2} ms)"));
    rows.push(row(
        "sqlite_append_64_processes",
        &format!("append, 64 processes x 1 sequential appender (durable; {grouped_each:.1} appends per fsync)"),
        (grouped, "appends/s"),
        limit(64.0),
        ">= 0.8",
        |_, ratio| ratio >= 0.8,
    ));
    rows.push(row(
        "sqlite_append_64_processes_vs_per_call",
        "  same, against one transaction per call",
        (grouped, "appends/s"),
        (per_call, "CommitMode::PerCall".to_owned()),
        ">= 20",
        |_, ratio| ratio >= 20.0,
    ));
    rows.push(row(
        "sqlite_append_1_process_64_callers",
        &format!("append, 1 process x 64 concurrent appenders (durable; {one_process_each:.1} appends per fsync)"),
        (one_process, "appends/s"),
        limit(64.0),
        ">= 0.5",
        |_, ratio| ratio >= 0.5,
    ));
    rows.push(row(
        "sqlite_append_sequential",
        &format!("append, 1 sequential appender (durable; {sequential_each:.2} appends per fsync)"),
        (sequential, "appends/s"),
        limit(1.0),
        ">= 0.8",
        |_, ratio| ratio >= 0.8,
    ));
    rows.push(row(
        "sqlite_append_sequential_wal_reused",
        &format!(
            "  same, after {} untimed appends, which wrap the WAL at --quick and full sizes (durable; {:.2} appends per fsync)",
            sizes.wal_warm_up, reused.1
        ),
        (reused.0, "appends/s"),
        limit(1.0),
        ">= 0.8",
        |_, ratio| ratio >= 0.8,
    ));

    let (durable_reads, memory_reads) = runtime.block_on(async {
        let registry = open(&dir.join("reads.db"), SyncMode::Full, CommitMode::default()).await?;
        let durable: Arc<dyn ProcessRegistry> = Arc::new(registry.clone());
        let memory = ActorProcessRegistry::start(RegistryConfig::default()).await?;
        let in_memory: Arc<dyn ProcessRegistry> = Arc::new(memory.clone());
        fill_read_fixture(&durable, sizes).await?;
        fill_read_fixture(&in_memory, sizes).await?;
        let (mut durable_times, mut memory_times) = (<[Vec<f64>; 5]>::default(), <[Vec<f64>; 5]>::default());
        for _ in 0..READ_ROUNDS {
            read_round(&durable, sizes, &mut durable_times).await?;
            read_round(&in_memory, sizes, &mut memory_times).await?;
        }
        registry.shutdown().await;
        memory.shutdown().await;
        Ok::<_, crate::BoxError>((durable_times.map(median), memory_times.map(median)))
    })?;
    let names = [
        ("sqlite_read_events_after_tail", "events_after, last 10 of the log"),
        ("sqlite_read_count_events_through", "count_events_through"),
        ("sqlite_read_recent_events", "recent_events(10)"),
        ("sqlite_read_get_process", "get_process"),
        ("sqlite_read_list_processes", "list_processes"),
    ];
    for ((id, label), (durable, memory)) in names.into_iter().zip(durable_reads.into_iter().zip(memory_reads)) {
        rows.push(row(
            id,
            &format!("read of an active process: {label} (p50)"),
            (durable, "us"),
            (memory, "memory store".to_owned()),
            "<= 1.2",
            |_, ratio| ratio <= 1.2,
        ));
    }

    let path = dir.join("reopen.db");
    eprintln!(
        "loadgen: building the reopen fixture: {} processes, {} events, {} logs of {BIG_LOG}",
        sizes.reopen_processes, sizes.reopen_events, sizes.big_logs
    );
    runtime.block_on(reopen_fixture(&path, sizes))?;
    // The fixture's registry is gone, but the allocator still holds what it
    // freed; hand it back before the children run, so that the pages they
    // fault in are not this process's leftovers' to keep (on this VM a
    // never-touched page costs 3-6 us to fault in, a recycled one far less).
    trim_heap();
    let path_text = path.display().to_string();
    let reopen: ReopenReport = run_child(
        "reopen child",
        &[DURABLE_PHASE_FLAG.to_owned(), "reopen".to_owned(), path_text, sizes.big_logs.to_string()],
        DURABLE_REPORT_PREFIX,
    )?;
    let memory: MemoryReport = run_child(
        "memory child",
        &[DURABLE_PHASE_FLAG.to_owned(), "memory".to_owned(), sizes.reopen_processes.to_string()],
        DURABLE_REPORT_PREFIX,
    )?;
    rows.push(row(
        "sqlite_reopen_first_answer",
        &format!(
            "reopen of {} processes / {} events: open to first answer",
            sizes.reopen_processes, sizes.reopen_events
        ),
        (reopen.first_answer_ms, "ms"),
        (1_000.0, "1 s".to_owned()),
        "< 1",
        |_, ratio| ratio < 1.0,
    ));
    let per = |bytes: u64| bytes as f64 / sizes.reopen_processes as f64;
    rows.push(row(
        "sqlite_reopen_rss",
        "  RSS after reopen, per process (logs stay on disk)",
        (per(reopen.rss_bytes), "B/process"),
        (per(memory.rss_bytes), "memory store, no events".to_owned()),
        "<= 1.0",
        |_, ratio| ratio <= 1.0,
    ));
    rows.push(row(
        "sqlite_activation_10k_events",
        &format!("activation of a {BIG_LOG}-event log (p50; p99 {:.2} ms)", reopen.activation_p99_ms),
        (reopen.activation_p50_ms, "ms"),
        (20.0, "20 ms".to_owned()),
        "< 1",
        |_, ratio| ratio < 1.0,
    ));

    let (relaxed, relaxed_per_call) = runtime.block_on(async {
        let relaxed = rounds_of(
            dir,
            "n64",
            sizes,
            (SyncMode::Normal, CommitMode::default()),
            (64, sizes.appends_per_appender, false),
            0,
        )
        .await?;
        let per_call = rounds_of(
            dir,
            "np64",
            sizes,
            (SyncMode::Normal, CommitMode::PerCall),
            (64, sizes.appends_per_appender / 4 + 1, false),
            0,
        )
        .await?;
        Ok::<_, crate::BoxError>((relaxed.0, per_call.0))
    })?;
    rows.push(row(
        "sqlite_relaxed_vs_per_call",
        "relaxed (NORMAL, grouped) vs NORMAL + one transaction per call, 64 appenders",
        (relaxed, "appends/s"),
        (relaxed_per_call, "NORMAL + PerCall".to_owned()),
        ">= 10",
        |_, ratio| ratio >= 10.0,
    ));
    Ok(rows)
}

/// The durable table.
pub fn render(rows: &[DurableRow]) -> String {
    let mut out =
        String::from("| durable figure | measured | against | ratio | target | reached |\n|---|---|---|---|---|---|\n");
    for row in rows {
        out.push_str(&format!(
            "| {} | {:.2} {} | {:.2} ({}) | {:.2}x | {} | {} |\n",
            row.label,
            row.measured,
            row.unit,
            row.reference,
            row.reference_label,
            row.ratio,
            row.target,
            if row.reached { "yes" } else { "**no**" }
        ));
    }
    out
}
