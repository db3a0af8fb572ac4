//! RSS per process (phase `memory`), each registry in a child process.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{ActorProcessRegistry, RegistryStats};
use serde::{Deserialize, Serialize};

use crate::args::{Sizes, MEMORY_PHASE_FLAG};
use crate::passivation::{passivating_actor_config, until_passivated};
use crate::report::{count, single_side, Row, Unit};
use crate::support::subject::{Kind, Subject};
use crate::support::workload::{register, runtime};
use crate::sys::{idle_cpu_percent, page_size, rss_bytes, run_child, trim_heap};
use crate::{BoxError, Result};

/// The line prefix a memory-phase child reports its result with.
const MEMORY_REPORT_PREFIX: &str = "LOADGEN-MEMORY ";

/// How long the memory phase lets the registry settle before reading RSS.
const MEMORY_SETTLE: Duration = Duration::from_millis(500);

/// Concurrent tasks that register and call the memory phase's processes.
pub const LOAD_TASKS: u64 = 8;

/// The memory phase holds its callers back while more actors than this are
/// alive (waiting for passivation), so calling a million processes never
/// keeps a million actors alive at once.
const MAX_LIVE_ACTORS: u64 = 50_000;

/// Runs `op(i)` for every `i` in `0..n` from [`LOAD_TASKS`] concurrent tasks
/// (task `k` takes `k`, `k + LOAD_TASKS`, ...).
pub async fn for_each_concurrently<F, Fut>(n: u64, op: F) -> Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    for_each_concurrently_on(n, LOAD_TASKS, op).await
}

/// Runs `op(i)` for every `i` in `0..n` from `tasks` concurrent tasks
/// (task `k` takes `k`, `k + tasks`, ...).
pub async fn for_each_concurrently_on<F, Fut>(n: u64, tasks: u64, op: F) -> Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let step = tasks.max(1);
    let tasks: Vec<_> = (0..step)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = task;
                while i < n {
                    op(i).await?;
                    i += step;
                }
                Ok::<_, BoxError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemoryReport {
    pub kind: Kind,
    pub processes: u64,
    /// RSS of the fresh registry, before the first registration.
    pub rss_before_bytes: u64,
    /// RSS after registering every process and settling; no call yet.
    pub rss_registered_bytes: u64,
    /// RSS after one call on every process (actor: and every actor
    /// passivated) and settling.
    pub rss_called_bytes: u64,
    /// Diagnostic: `rss_called_bytes` after `malloc_trim(0)` (glibc only),
    /// i.e. without the freed memory the allocator kept.
    pub rss_called_trimmed_bytes: Option<u64>,
    /// (`rss_registered_bytes` - `rss_before_bytes`) / `processes`.
    pub bytes_per_process_registered: f64,
    /// (`rss_called_bytes` - `rss_before_bytes`) / `processes`.
    pub bytes_per_process_called: f64,
    /// (`rss_called_trimmed_bytes` - `rss_before_bytes`) / `processes`.
    pub bytes_per_process_called_trimmed: Option<f64>,
    pub register_seconds: f64,
    pub call_seconds: f64,
    /// Actor only: from the last call to `live_actors == 0`.
    pub passivate_wait_seconds: Option<f64>,
    /// Actor only: the most live actors seen while calling (sampled).
    pub peak_live_actors: Option<u64>,
    /// CPU used while idle with every process registered (percent of a core).
    pub idle_cpu_percent_registered: Option<f64>,
    /// CPU used while idle after the calls, every actor passivated.
    pub idle_cpu_percent_called: Option<f64>,
    /// Actor only: stats when RSS was read after registering.
    pub stats_registered: Option<RegistryStats>,
    /// Actor only: stats when RSS was read after the calls.
    pub stats_called: Option<RegistryStats>,
}

fn memory_id(i: u64) -> String {
    format!("memory-{i:08}")
}

/// The child side: register `processes` processes on a fresh registry,
/// read RSS, call each process once (actor: wait for every actor to
/// passivate), read RSS again, and print a [`MemoryReport`] line.
pub fn memory_phase(kind: Kind, processes: u64) -> Result<()> {
    let page_size = page_size();
    let runtime = runtime()?;
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            let subject = Subject::start_with(kind, passivating_actor_config()).await?;
            let actor = subject.actor.clone();
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rss_before = rss_bytes(page_size)?;

            let start = Instant::now();
            let registry = Arc::clone(&subject.registry);
            for_each_concurrently(processes, move |i| {
                let registry = Arc::clone(&registry);
                async move { Ok(register(&registry, &memory_id(i)).await?) }
            })
            .await?;
            let register_seconds = start.elapsed().as_secs_f64();
            let idle_cpu_percent_registered = idle_cpu_percent(MEMORY_SETTLE).await;
            let rss_registered = rss_bytes(page_size)?;
            let stats_registered = actor.as_ref().map(ActorProcessRegistry::stats);

            let start = Instant::now();
            let peak_live = Arc::new(AtomicU64::new(0));
            let (registry, limiter, peak) = (Arc::clone(&subject.registry), actor.clone(), Arc::clone(&peak_live));
            for_each_concurrently(processes, move |i| {
                let (registry, limiter, peak) = (Arc::clone(&registry), limiter.clone(), Arc::clone(&peak));
                async move {
                    if let Some(actor) = limiter.filter(|_| i % 256 < LOAD_TASKS) {
                        loop {
                            let live = actor.stats().live_actors;
                            peak.fetch_max(live, Ordering::Relaxed);
                            if live <= MAX_LIVE_ACTORS {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    // A mutation: it starts the process's actor (a read
                    // would be answered without one).
                    let id = memory_id(i);
                    registry.clear_process_wait(&id).await.map_err(|err| format!("clear_process_wait {id}: {err}"))?;
                    Ok(())
                }
            })
            .await?;
            let call_seconds = start.elapsed().as_secs_f64();
            let mut passivate_wait_seconds = None;
            if let Some(actor) = &actor {
                let start = Instant::now();
                until_passivated(actor, processes).await?;
                passivate_wait_seconds = Some(start.elapsed().as_secs_f64());
            }
            let idle_cpu_percent_called = idle_cpu_percent(MEMORY_SETTLE).await;
            let rss_called = rss_bytes(page_size)?;
            let stats_called = actor.as_ref().map(ActorProcessRegistry::stats);
            let rss_called_trimmed = if trim_heap() { Some(rss_bytes(page_size)?) } else { None };
            let per_process = |rss: u64| rss.saturating_sub(rss_before) as f64 / processes as f64;
            Ok::<_, BoxError>(MemoryReport {
                kind,
                processes,
                rss_before_bytes: rss_before,
                rss_registered_bytes: rss_registered,
                rss_called_bytes: rss_called,
                bytes_per_process_registered: per_process(rss_registered),
                bytes_per_process_called: per_process(rss_called),
                rss_called_trimmed_bytes: rss_called_trimmed,
                bytes_per_process_called_trimmed: rss_called_trimmed.map(per_process),
                register_seconds,
                call_seconds,
                passivate_wait_seconds,
                peak_live_actors: actor.as_ref().map(|_| peak_live.load(Ordering::Relaxed)),
                idle_cpu_percent_registered,
                idle_cpu_percent_called,
                stats_registered,
                stats_called,
            })
        })
        .await?
    })?;
    println!("{MEMORY_REPORT_PREFIX}{}", serde_json::to_string(&report)?);
    // Skip tearing down the registry: the numbers are out, and stopping a
    // million actors one by one would only slow the run down.
    std::process::exit(0);
}

/// The parent side: runs [`memory_phase`] in a child process.
fn run_memory_child(kind: Kind, processes: u64) -> Result<MemoryReport> {
    let args = [MEMORY_PHASE_FLAG.to_owned(), kind.name().to_owned(), "--processes".to_owned(), processes.to_string()];
    run_child(&format!("{} memory phase", kind.name()), &args, MEMORY_REPORT_PREFIX)
}

pub fn memory_rows(sizes: &Sizes) -> Result<(Vec<Row>, Vec<MemoryReport>)> {
    let n = sizes.memory_processes;
    eprintln!("[memory] {} processes per registry, each registry in a child process", count(n));
    let actor = run_memory_child(Kind::Actor, n)?;
    let baseline = run_memory_child(Kind::Baseline, n)?;
    let rows = vec![
        Row::new(
            "memory_registered",
            format!("RSS per process, {} registered, never called", count(n)),
            Unit::BytesPerProcess,
            single_side(actor.bytes_per_process_registered),
            single_side(baseline.bytes_per_process_registered),
        ),
        Row::new(
            "memory_called_passivated",
            format!("RSS per process, {} called once (actor: then passivated)", count(n)),
            Unit::BytesPerProcess,
            single_side(actor.bytes_per_process_called),
            single_side(baseline.bytes_per_process_called),
        ),
    ];
    Ok((rows, vec![actor, baseline]))
}
