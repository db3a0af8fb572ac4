//! Criterion benches: the actor registry and the global-lock baseline, side
//! by side.
//!
//! Every group has two functions, `actor` ([`ActorProcessRegistry`]) and
//! `baseline` ([`GlobalLockRegistry`]), both driven through
//! `Arc<dyn ProcessRegistry>` so they pay the same dispatch. Everything runs
//! on one multi-thread tokio runtime with 2 workers; the timed loop itself is
//! spawned onto the runtime (criterion's `block_on` thread only waits), so
//! the callers and the actors share the same 2 workers.
//!
//! Groups (one process registration everywhere: the core event types plus
//! `bench.tick` and `bench.signal`, both with a small object schema; appends
//! carry `{"n": i}` and no replay key):
//!
//! - `register`: one new process per iteration, sequential; a fresh registry
//!   per sample.
//! - `append_sequential`: one `bench.tick` append per iteration to one
//!   process; a fresh registry and process per sample.
//! - `append_concurrent_64`: 64 tasks, each appending to its own process;
//!   one iteration = 64 appends (one per task), throughput in appends/s.
//! - `events_after_10k_cursor_0` / `events_after_10k_cursor_9990`,
//!   `count_events_through_10k`, `recent_events_10_of_10k`: reads of a
//!   10,000-event log (every 10th event is a `bench.signal`).
//! - `wake_latency`: a task parked in `wait_event_after(bench.signal)`,
//!   answered by an append from the timed task; time from just before the
//!   append to the waiter running again.
//! - `await_latency`: same with `await_process` answered by
//!   `complete_process`, one fresh process per iteration.
//! - `lease_cycle`: claim + renew + complete of one process's lease.
//! - `list_processes_100k`: `list_processes(any)` over 100,000 processes.
//! - `list_handle_grants_1k`: `list_handle_grants` of a scope holding 1,000 grants.
//!
//! Under `cargo test --all-targets` criterion runs each function once; the
//! fixtures are then scaled down (see [`Sizes`]) so that stays quick.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use process_registry::{
    ProcessHandleDescriptor, ProcessLeaseCompletion, ProcessListFilter, ProcessRegistry, SessionScope,
};
use tokio::runtime::Runtime;

#[path = "support/mod.rs"]
mod support;

use support::parking::{await_once, wake_once};
use support::subject::{Kind, Subject};
use support::workload::{fill_log, register, tick, LEASE_TTL_MS, SIGNAL};

const CONCURRENT_TASKS: u64 = 64;

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// Fixture sizes: the ones the group names state under `cargo bench`, small
/// ones when criterion runs the benches once as tests.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    log_len: u64,
    list_processes: u64,
    grants: u64,
}

impl Sizes {
    fn from_args() -> Self {
        // `cargo bench` passes `--bench`; `cargo test --benches` does not,
        // and criterion then only checks that each bench runs.
        let benchmarking = std::env::args().any(|arg| arg == "--bench") && !std::env::args().any(|arg| arg == "--test");
        if benchmarking {
            Self { log_len: 10_000, list_processes: 100_000, grants: 1_000 }
        } else {
            Self { log_len: 100, list_processes: 100, grants: 10 }
        }
    }
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// What a bench function works on: a registry and, per group, some
/// prepared processes.
struct Fixture {
    kind: Kind,
    subject: Subject,
    process_id: String,
    scope: SessionScope,
    sizes: Sizes,
}

impl Fixture {
    async fn empty(kind: Kind, sizes: Sizes) -> Self {
        Self {
            kind,
            subject: Subject::start(kind).await.expect("start the registry"),
            process_id: String::new(),
            scope: SessionScope::new("bench-session"),
            sizes,
        }
    }

    fn registry(&self) -> &Arc<dyn ProcessRegistry> {
        &self.subject.registry
    }
}

// ---------------------------------------------------------------------------
// Process ids
// ---------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A process id never used before in this run.
fn fresh_id(prefix: &str) -> String {
    format!("{prefix}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

fn runtime() -> Runtime {
    support::workload::runtime().expect("build the tokio runtime")
}

/// Runs one group: for each kind, builds its fixture with `setup` (only if
/// the bench is not filtered out), benches `routine(fixture, iters)` (which
/// returns the time it measured; it runs as a task on the runtime), then
/// shuts the fixture down.
fn bench_pair<S, SF, R, RF>(
    c: &mut Criterion,
    rt: &Runtime,
    sizes: Sizes,
    name: &str,
    tune: impl Fn(&mut BenchmarkGroup<'_, WallTime>),
    setup: S,
    routine: R,
) where
    S: Fn(Kind, Sizes) -> SF,
    SF: Future<Output = Fixture>,
    R: Fn(Arc<Fixture>, u64) -> RF,
    RF: Future<Output = Duration> + Send + 'static,
{
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    tune(&mut group);
    for kind in Kind::BOTH {
        let mut built: Option<Arc<Fixture>> = None;
        group.bench_function(kind.name(), |b| {
            let fixture = Arc::clone(built.get_or_insert_with(|| Arc::new(rt.block_on(setup(kind, sizes)))));
            b.to_async(rt).iter_custom(|iters| {
                let timed = routine(Arc::clone(&fixture), iters);
                async move { tokio::spawn(timed).await.expect("the timed task panicked") }
            });
        });
        if let Some(fixture) = built {
            rt.block_on(fixture.subject.shutdown());
        }
    }
    group.finish();
}

fn no_tuning(_: &mut BenchmarkGroup<'_, WallTime>) {}

async fn empty_fixture(kind: Kind, sizes: Sizes) -> Fixture {
    Fixture::empty(kind, sizes).await
}

async fn log_fixture(kind: Kind, sizes: Sizes) -> Fixture {
    let mut fixture = Fixture::empty(kind, sizes).await;
    fixture.process_id = fresh_id("log");
    fill_log(fixture.registry(), &fixture.process_id, sizes.log_len).await.expect("fill the log");
    fixture
}

async fn one_process_fixture(kind: Kind, sizes: Sizes) -> Fixture {
    let mut fixture = Fixture::empty(kind, sizes).await;
    fixture.process_id = fresh_id("one");
    register(fixture.registry(), &fixture.process_id).await.expect("register a bench process");
    fixture
}

async fn many_processes_fixture(kind: Kind, sizes: Sizes) -> Fixture {
    let fixture = Fixture::empty(kind, sizes).await;
    for _ in 0..sizes.list_processes {
        register(fixture.registry(), &fresh_id("many")).await.expect("register a bench process");
    }
    fixture
}

async fn grants_fixture(kind: Kind, sizes: Sizes) -> Fixture {
    let fixture = Fixture::empty(kind, sizes).await;
    for _ in 0..sizes.grants {
        let process_id = fresh_id("granted");
        register(fixture.registry(), &process_id).await.expect("register a bench process");
        fixture
            .registry()
            .grant_handle(&fixture.scope, &process_id, ProcessHandleDescriptor::default())
            .await
            .expect("grant a handle");
    }
    fixture
}

// ---------------------------------------------------------------------------
// Routines: each returns the time of its timed part only
// ---------------------------------------------------------------------------

async fn register_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let subject = Subject::start(fixture.kind).await.expect("start the registry");
    let ids: Vec<String> = (0..iters).map(|_| fresh_id("reg")).collect();
    let start = Instant::now();
    for id in &ids {
        register(&subject.registry, id).await.expect("register a bench process");
    }
    let elapsed = start.elapsed();
    subject.shutdown().await;
    elapsed
}

async fn append_sequential_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let subject = Subject::start(fixture.kind).await.expect("start the registry");
    let process_id = fresh_id("seq");
    register(&subject.registry, &process_id).await.expect("register a bench process");
    let start = Instant::now();
    for n in 0..iters {
        subject.registry.append_event(&process_id, tick(n)).await.expect("append");
    }
    let elapsed = start.elapsed();
    subject.shutdown().await;
    elapsed
}

async fn append_concurrent_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let subject = Subject::start(fixture.kind).await.expect("start the registry");
    let mut ids = Vec::new();
    for _ in 0..CONCURRENT_TASKS {
        let process_id = fresh_id("conc");
        register(&subject.registry, &process_id).await.expect("register a bench process");
        ids.push(process_id);
    }
    let start = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|process_id| {
            let registry = Arc::clone(&subject.registry);
            tokio::spawn(async move {
                for n in 0..iters {
                    registry.append_event(&process_id, tick(n)).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an appending task panicked");
    }
    let elapsed = start.elapsed();
    subject.shutdown().await;
    elapsed
}

async fn time_reads<F, Fut>(iters: u64, mut read: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(read().await);
    }
    start.elapsed()
}

async fn events_after_head_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, process_id, expected) = (fixture.registry(), fixture.process_id.as_str(), fixture.sizes.log_len);
    time_reads(iters, || async move {
        let events = registry.events_after(process_id, 0).await.expect("events_after");
        debug_assert_eq!(events.len() as u64, expected);
        events.len()
    })
    .await
}

async fn events_after_tail_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, process_id) = (fixture.registry(), fixture.process_id.as_str());
    let cursor = fixture.sizes.log_len - 10;
    time_reads(iters, || async move {
        let events = registry.events_after(process_id, cursor).await.expect("events_after");
        debug_assert_eq!(events.len(), 10);
        events.len()
    })
    .await
}

async fn count_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, process_id) = (fixture.registry(), fixture.process_id.as_str());
    let through = fixture.sizes.log_len;
    time_reads(iters, || async move {
        let count = registry.count_events_through(process_id, SIGNAL, through).await.expect("count_events_through");
        debug_assert_eq!(count, through / 10);
        usize::try_from(count).unwrap_or(usize::MAX)
    })
    .await
}

async fn recent_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, process_id) = (fixture.registry(), fixture.process_id.as_str());
    time_reads(iters, || async move {
        let events = registry.recent_events(process_id, 10).await.expect("recent_events");
        debug_assert_eq!(events.len(), 10);
        events.len()
    })
    .await
}

async fn wake_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let process_id = fresh_id("wake");
    register(fixture.registry(), &process_id).await.expect("register a bench process");
    let mut total = Duration::ZERO;
    for after in 0..iters {
        total += wake_once(&fixture.subject, &process_id, after).await.expect("one wake");
    }
    total
}

async fn await_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    // Completed processes accumulate: a fresh registry per sample.
    let subject = Subject::start(fixture.kind).await.expect("start the registry");
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let process_id = fresh_id("await");
        register(&subject.registry, &process_id).await.expect("register a bench process");
        total += await_once(&subject, &process_id).await.expect("one await");
    }
    subject.shutdown().await;
    total
}

async fn lease_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, process_id) = (fixture.registry(), fixture.process_id.as_str());
    let start = Instant::now();
    for _ in 0..iters {
        let lease = registry.claim_process_lease(process_id, "bench-worker", LEASE_TTL_MS).await.expect("claim");
        let lease = registry.renew_process_lease(&lease, LEASE_TTL_MS).await.expect("renew");
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await.expect("complete");
    }
    start.elapsed()
}

async fn list_processes_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, expected) = (fixture.registry(), fixture.sizes.list_processes);
    let filter = &ProcessListFilter::any();
    time_reads(iters, || async move {
        let records = registry.list_processes(filter).await.expect("list_processes");
        debug_assert_eq!(records.len() as u64, expected);
        records.len()
    })
    .await
}

async fn list_grants_routine(fixture: Arc<Fixture>, iters: u64) -> Duration {
    let (registry, scope, expected) = (fixture.registry(), &fixture.scope, fixture.sizes.grants);
    time_reads(iters, || async move {
        let entries = registry.list_handle_grants(scope).await.expect("list_handle_grants");
        debug_assert_eq!(entries.len() as u64, expected);
        entries.len()
    })
    .await
}

// ---------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------

fn writes(c: &mut Criterion) {
    let rt = runtime();
    let sizes = Sizes::from_args();
    let one_element = |group: &mut BenchmarkGroup<'_, WallTime>| {
        group.throughput(Throughput::Elements(1));
    };
    bench_pair(c, &rt, sizes, "register", one_element, empty_fixture, register_routine);
    bench_pair(c, &rt, sizes, "append_sequential", one_element, empty_fixture, append_sequential_routine);
    bench_pair(
        c,
        &rt,
        sizes,
        "append_concurrent_64",
        |group| {
            group.throughput(Throughput::Elements(CONCURRENT_TASKS));
        },
        empty_fixture,
        append_concurrent_routine,
    );
    bench_pair(c, &rt, sizes, "lease_cycle", no_tuning, one_process_fixture, lease_routine);
}

fn log_reads(c: &mut Criterion) {
    let rt = runtime();
    let sizes = Sizes::from_args();
    let flat = |group: &mut BenchmarkGroup<'_, WallTime>| {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    };
    bench_pair(c, &rt, sizes, "events_after_10k_cursor_0", flat, log_fixture, events_after_head_routine);
    bench_pair(c, &rt, sizes, "events_after_10k_cursor_9990", no_tuning, log_fixture, events_after_tail_routine);
    bench_pair(c, &rt, sizes, "count_events_through_10k", no_tuning, log_fixture, count_routine);
    bench_pair(c, &rt, sizes, "recent_events_10_of_10k", no_tuning, log_fixture, recent_routine);
}

fn parking(c: &mut Criterion) {
    let rt = runtime();
    let sizes = Sizes::from_args();
    bench_pair(c, &rt, sizes, "wake_latency", no_tuning, empty_fixture, wake_routine);
    bench_pair(c, &rt, sizes, "await_latency", no_tuning, empty_fixture, await_routine);
}

fn listings(c: &mut Criterion) {
    let rt = runtime();
    let sizes = Sizes::from_args();
    bench_pair(
        c,
        &rt,
        sizes,
        "list_processes_100k",
        |group| {
            group.sampling_mode(SamplingMode::Flat).sample_size(10);
        },
        many_processes_fixture,
        list_processes_routine,
    );
    bench_pair(c, &rt, sizes, "list_handle_grants_1k", no_tuning, grants_fixture, list_grants_routine);
}

criterion_group!(benches, writes, log_reads, parking, listings);
criterion_main!(benches);
