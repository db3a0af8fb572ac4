//! Worker overhead (phase `worker`): what [`ProcessWorker`] costs per
//! process against the raw trait calls it makes.
//!
//! Each round registers `worker_processes` fresh processes (untimed), then
//! finishes them one of two ways, timed from the first call to the last
//! process being terminal:
//!
//! - **raw**: `worker_concurrency` tasks, each taking every
//!   `worker_concurrency`-th process, call `claim_process_lease`,
//!   `complete_process_fenced` and `complete_process_lease`;
//! - **worker**: a [`ProcessWorker`] with the same concurrency and an empty
//!   handler (it answers `success(null)` at once) sweeps, claims, runs the
//!   handler in its own task with its renewal task beside it, reads the log
//!   for `ProcessContext::recorded`, completes fenced and releases. The
//!   driver polls `stats()` every millisecond until every process is done.
//!
//! Both run on each registry; the row reports the worker's processes/s
//! against the raw calls' on the same registry.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::worker::{ProcessWorker, WorkerConfig};
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessAwaitOutput, ProcessLeaseCompletion, RegistryConfig,
};
use serde_json::Value;

use crate::args::Sizes;
use crate::memory::for_each_concurrently_on;
use crate::report::{count, per_second, ratio_of_medians, Collected, Row, Sample, Unit};
use crate::support::subject::Kind;
use crate::support::workload::{register, LEASE_TTL_MS};
use crate::Result;

/// The definition name of the worker phase's processes
/// ([`register`](crate::support::workload::register) registers `bench.job`).
const DEFINITION: &str = "bench.job";

/// How the driver waits for a worker to finish: it polls this often.
const POLL: Duration = Duration::from_millis(1);

/// How long a worker round may take before the phase fails.
const ROUND_DEADLINE: Duration = Duration::from_secs(300);

fn worker_id(round: usize, i: u64) -> String {
    format!("worker-r{round}-{i:07}")
}

async fn fresh(kind: Kind) -> Result<(Arc<dyn FencedProcessRegistry>, Option<ActorProcessRegistry>)> {
    Ok(match kind {
        Kind::Actor => {
            let actor = ActorProcessRegistry::start(RegistryConfig::default()).await?;
            (Arc::new(actor.clone()), Some(actor))
        }
        Kind::Baseline => (Arc::new(GlobalLockRegistry::new()), None),
    })
}

async fn fixture(registry: &Arc<dyn FencedProcessRegistry>, round: usize, sizes: Sizes) -> Result<()> {
    let plain = Arc::clone(registry) as Arc<dyn process_registry::ProcessRegistry>;
    for_each_concurrently_on(sizes.worker_processes, 8, move |i| {
        let registry = Arc::clone(&plain);
        async move { Ok(register(&registry, &worker_id(round, i)).await?) }
    })
    .await
}

/// The raw calls a worker makes per process, from `worker_concurrency` tasks.
async fn raw_round(registry: &Arc<dyn FencedProcessRegistry>, round: usize, sizes: Sizes) -> Result<Duration> {
    let start = Instant::now();
    let registry = Arc::clone(registry);
    for_each_concurrently_on(sizes.worker_processes, sizes.worker_concurrency, move |i| {
        let registry = Arc::clone(&registry);
        async move {
            let id = worker_id(round, i);
            let lease = registry.claim_process_lease(&id, "raw", LEASE_TTL_MS).await?;
            registry.complete_process_fenced(&lease, ProcessAwaitOutput::success(Value::Null)).await?;
            registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await?;
            Ok(())
        }
    })
    .await?;
    Ok(start.elapsed())
}

/// A worker with an empty handler, until every process is done.
async fn worker_round(registry: &Arc<dyn FencedProcessRegistry>, round: usize, sizes: Sizes) -> Result<Duration> {
    let mut config = WorkerConfig::new(format!("bench-worker-{round}"));
    config.concurrency = usize::try_from(sizes.worker_concurrency)?;
    config.lease_ttl = Duration::from_millis(LEASE_TTL_MS);
    let start = Instant::now();
    let worker = ProcessWorker::builder(Arc::clone(registry), config)
        .handler(DEFINITION, |_context| async { Ok::<_, Infallible>(ProcessAwaitOutput::success(Value::Null)) })
        .start()?;
    loop {
        let stats = worker.stats();
        if stats.completed + stats.failed >= sizes.worker_processes {
            break;
        }
        if start.elapsed() > ROUND_DEADLINE {
            return Err(
                format!("the worker finished {} of {} processes", stats.completed, sizes.worker_processes).into()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = start.elapsed();
    let stats = worker.shutdown(Duration::from_secs(10)).await;
    if stats.failed > 0 || stats.lost > 0 {
        return Err(format!("worker round: {stats:?}").into());
    }
    Ok(elapsed)
}

async fn worker_phase(sizes: Sizes) -> Result<Vec<Row>> {
    let n = sizes.worker_processes;
    let mut rows = Vec::new();
    for kind in Kind::BOTH {
        let (mut raw, mut worker) = (Collected::default(), Collected::default());
        // Round 0 warms up and is not recorded; then raw and worker alternate.
        for round in 0..=sizes.rounds {
            for worker_first in [round % 2 == 1, round % 2 == 0] {
                let (registry, actor) = fresh(kind).await?;
                fixture(&registry, round, sizes).await?;
                let elapsed = if worker_first {
                    worker_round(&registry, round, sizes).await?
                } else {
                    raw_round(&registry, round, sizes).await?
                };
                if let Some(actor) = actor {
                    actor.shutdown().await;
                }
                if round > 0 {
                    let into = if worker_first { &mut worker } else { &mut raw };
                    into.add(Sample::Throughput(per_second(n, elapsed)));
                }
            }
        }
        let (worker, raw) = (worker.side(Unit::OpsPerSec), raw.side(Unit::OpsPerSec));
        let ratio = ratio_of_medians(&worker, &raw);
        rows.push(
            Row::new(
                &format!("worker_overhead_{}", kind.name()),
                format!("{} registry: ProcessWorker vs raw calls, {} processes", kind.name(), count(n)),
                Unit::OpsPerSec,
                worker,
                raw,
            )
            .with_ratio(
                ratio,
                "worker/raw",
                "processes/s; \"actor\" column: the worker, \"baseline\" column: the raw claim + fenced complete + \
                 release calls it makes, both on this registry",
            ),
        );
    }
    Ok(rows)
}

/// Runs [`worker_phase`] as a task on a fresh runtime.
pub fn run_worker(sizes: Sizes) -> Result<Vec<Row>> {
    crate::as_task(async move {
        eprintln!(
            "[worker] {} processes per round, concurrency {}",
            count(sizes.worker_processes),
            sizes.worker_concurrency
        );
        worker_phase(sizes).await
    })
}
