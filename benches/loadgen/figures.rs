//! The per-operation figures (phase `figures`): each figure runs in a child
//! process of its own, with both registries' rounds interleaved.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::testing::preparation::{canonical_hash, Preparation};
use process_registry::{
    Limits, ProcessExternalRef, ProcessHandleDescriptor, ProcessLeaseCompletion, ProcessListFilter, ProcessRegistry,
    SessionScope, WaitKind, WaitState,
};

use crate::args::{Args, Sizes, FIGURE_PHASE_FLAG};
use crate::forwarder::Forwarder;
use crate::report::{count, per_second, Collected, Row, Sample, Unit};
use crate::support::parking::{await_once, wake_after_idle, wake_once};
use crate::support::subject::{Kind, Subject};
use crate::support::workload::{fill_log, register, registration, runtime, tick, LEASE_TTL_MS, SIGNAL};
use crate::sys::run_child;
use crate::{BoxError, Result};

/// The line prefix a figure child reports its row with.
const FIGURE_REPORT_PREFIX: &str = "LOADGEN-FIGURE ";

/// Times `samples` calls of `op` one by one.
async fn time_each<F, Fut>(samples: u64, mut op: F) -> Result<Vec<Duration>>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut times = Vec::with_capacity(usize::try_from(samples).unwrap_or(0));
    for i in 0..samples {
        let start = Instant::now();
        op(i).await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

/// Fails unless a call named `what` returned `expected` items.
pub fn expect_len(what: &str, got: usize, expected: u64) -> Result<()> {
    if got as u64 == expected {
        Ok(())
    } else {
        Err(format!("{what} returned {got} items, expected {expected}").into())
    }
}

/// One lease cycle on `process_id`: claim, renew, complete.
async fn lease_cycle(registry: &Arc<dyn ProcessRegistry>, process_id: &str) -> Result<()> {
    let lease = registry.claim_process_lease(process_id, "loadgen-worker", LEASE_TTL_MS).await?;
    let lease = registry.renew_process_lease(&lease, LEASE_TTL_MS).await?;
    registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await?;
    Ok(())
}

/// The record's single-call mutations on `process_id`: a wait set, the
/// wait cleared, an external ref set.
async fn record_mutations(registry: &Arc<dyn ProcessRegistry>, process_id: &str, n: u64) -> Result<()> {
    let kind = WaitKind::Signal {
        name: "go".to_owned(),
        event_type: SIGNAL.to_owned(),
        key: format!("go-{n}"),
        ordinal: n + 1,
    };
    registry.set_process_wait(process_id, WaitState { kind, since_ms: n }).await?;
    registry.clear_process_wait(process_id).await?;
    let external_ref = ProcessExternalRef { backend: "queue".to_owned(), id: format!("job-{n}"), metadata: None };
    registry.set_external_ref(process_id, external_ref).await?;
    Ok(())
}

/// Events per batch in the batch-append figure.
const BATCH: u64 = 100;
/// How long the runtime idles before the append of `wake_latency_idle`.
const IDLE_BEFORE_WAKE: std::time::Duration = std::time::Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Figure {
    Register,
    AppendSequential,
    AppendSequentialHandoff,
    AppendConcurrent,
    AppendBatch,
    RegisterPreparation,
    EventsAfterHead,
    EventsAfterTail,
    CountEventsThrough,
    RecentEvents,
    ConcurrentReads,
    WakeLatency,
    WakeLatencyIdle,
    AwaitLatency,
    LeaseCycle,
    LeaseCycleFresh,
    RecordMutations,
    ListProcesses,
    ListHandleGrants,
}

impl Figure {
    const ALL: [Figure; 19] = [
        Figure::Register,
        Figure::RegisterPreparation,
        Figure::AppendSequential,
        Figure::AppendSequentialHandoff,
        Figure::AppendConcurrent,
        Figure::AppendBatch,
        Figure::EventsAfterHead,
        Figure::EventsAfterTail,
        Figure::CountEventsThrough,
        Figure::RecentEvents,
        Figure::ConcurrentReads,
        Figure::WakeLatency,
        Figure::WakeLatencyIdle,
        Figure::AwaitLatency,
        Figure::LeaseCycle,
        Figure::LeaseCycleFresh,
        Figure::RecordMutations,
        Figure::ListProcesses,
        Figure::ListHandleGrants,
    ];

    /// A stable key for tracking (sizes are in `label` and `params`).
    fn id(self) -> &'static str {
        match self {
            Figure::Register => "register",
            Figure::RegisterPreparation => "registration_preparation",
            Figure::AppendSequential => "append_sequential",
            Figure::AppendSequentialHandoff => "append_sequential_handoff_ceiling",
            Figure::AppendConcurrent => "append_concurrent",
            Figure::AppendBatch => "append_batch_100",
            Figure::EventsAfterHead => "events_after_head",
            Figure::EventsAfterTail => "events_after_tail",
            Figure::CountEventsThrough => "count_events_through",
            Figure::RecentEvents => "recent_events_10",
            Figure::ConcurrentReads => "reads_concurrent_one_process",
            Figure::WakeLatency => "wake_latency",
            Figure::WakeLatencyIdle => "wake_latency_idle",
            Figure::AwaitLatency => "await_latency",
            Figure::LeaseCycle => "lease_cycle",
            Figure::LeaseCycleFresh => "lease_cycle_fresh",
            Figure::RecordMutations => "wait_set_clear_external_ref",
            Figure::ListProcesses => "list_processes",
            Figure::ListHandleGrants => "list_handle_grants",
        }
    }

    fn label(self, sizes: &Sizes) -> String {
        let log = count(sizes.log_len);
        match self {
            Figure::Register => "register (sequential)".to_owned(),
            Figure::RegisterPreparation => {
                "  its preparation (actor column) against canonical JSON + SHA-256 once (baseline column)".to_owned()
            }
            Figure::AppendSequential => "append, 1 process sequential".to_owned(),
            Figure::AppendSequentialHandoff => "  same, baseline behind 1 actor (ceiling)".to_owned(),
            Figure::AppendConcurrent => format!("append, {} processes concurrent", sizes.concurrent_tasks),
            Figure::AppendBatch => format!("append_events, batches of {BATCH} on 1 process (events/s)"),
            Figure::EventsAfterHead => format!("events_after, {log} log, cursor 0"),
            Figure::EventsAfterTail => {
                format!("events_after, {log} log, cursor {}", count(sizes.log_len.saturating_sub(10)))
            }
            Figure::CountEventsThrough => format!("count_events_through, {log} log"),
            Figure::RecentEvents => format!("recent_events(10), {log} log"),
            Figure::ConcurrentReads => {
                format!("{} tasks read the last 10 of one {log} log at once (reads/s)", sizes.concurrent_tasks)
            }
            Figure::WakeLatency => "wake latency (wait_event_after <- append)".to_owned(),
            Figure::WakeLatencyIdle => {
                format!("  same, runtime idle {} ms before the append", IDLE_BEFORE_WAKE.as_millis())
            }
            Figure::AwaitLatency => "await latency (await_process <- complete)".to_owned(),
            Figure::LeaseCycle => "lease claim+renew+complete".to_owned(),
            Figure::LeaseCycleFresh => "  same, each on a process registered just before".to_owned(),
            Figure::RecordMutations => "set_process_wait+clear_process_wait+set_external_ref".to_owned(),
            Figure::ListProcesses => format!("list_processes, {} processes", count(sizes.listed_processes)),
            Figure::ListHandleGrants => format!("list_handle_grants, {} grants", count(sizes.grants)),
        }
    }

    fn unit(self) -> Unit {
        match self {
            Figure::Register
            | Figure::AppendSequential
            | Figure::AppendSequentialHandoff
            | Figure::AppendConcurrent
            | Figure::AppendBatch
            | Figure::ConcurrentReads => Unit::OpsPerSec,
            _ => Unit::Micros,
        }
    }
}

/// A registry prepared for one figure.
struct Fixture {
    subject: Subject,
    /// Only on the handoff ceiling's forwarded side: an actor in front of
    /// the subject (a baseline).
    forwarder: Option<Forwarder>,
    /// Only on the preparation figure's actor side.
    preparation: Option<Preparation>,
    process_id: String,
    scope: SessionScope,
}

impl Fixture {
    fn registry(&self) -> &Arc<dyn ProcessRegistry> {
        &self.subject.registry
    }

    async fn shutdown(&self) {
        self.subject.shutdown().await;
        if let Some(forwarder) = &self.forwarder {
            forwarder.stop();
        }
    }
}

async fn setup(figure: Figure, kind: Kind, sizes: &Sizes) -> Result<Fixture> {
    let (subject, forwarder) = match (figure, kind) {
        // The ceiling's "actor" side: the baseline with a forwarder in front.
        (Figure::AppendSequentialHandoff, Kind::Actor) => {
            let subject = Subject::start(Kind::Baseline).await?;
            let forwarder = Forwarder::start(Arc::clone(&subject.registry)).await?;
            (subject, Some(forwarder))
        }
        _ => (Subject::start(kind).await?, None),
    };
    // The preparation figure's actor column runs the preparation; its
    // baseline column the floor.
    let preparation =
        (figure == Figure::RegisterPreparation && kind == Kind::Actor).then(|| Preparation::new(Limits::default()));
    let fixture =
        Fixture { subject, forwarder, preparation, process_id: String::new(), scope: SessionScope::new("loadgen") };
    let registry = fixture.registry();
    let process_id = match figure {
        Figure::EventsAfterHead
        | Figure::EventsAfterTail
        | Figure::CountEventsThrough
        | Figure::RecentEvents
        | Figure::ConcurrentReads => {
            let process_id = "log".to_owned();
            fill_log(registry, &process_id, sizes.log_len).await?;
            process_id
        }
        Figure::LeaseCycle => {
            register(registry, "leased").await?;
            "leased".to_owned()
        }
        Figure::RecordMutations => {
            register(registry, "waiting").await?;
            "waiting".to_owned()
        }
        Figure::ListProcesses => {
            for i in 0..sizes.listed_processes {
                register(registry, &format!("listed-{i:07}")).await?;
            }
            String::new()
        }
        Figure::ListHandleGrants => {
            for i in 0..sizes.grants {
                let process_id = format!("granted-{i:05}");
                register(registry, &process_id).await?;
                registry
                    .grant_handle(&fixture.scope, &process_id, ProcessHandleDescriptor::default())
                    .await
                    .map_err(|err| format!("grant {process_id}: {err}"))?;
            }
            String::new()
        }
        Figure::Register
        | Figure::RegisterPreparation
        | Figure::AppendSequential
        | Figure::AppendSequentialHandoff
        | Figure::AppendConcurrent
        | Figure::AppendBatch
        | Figure::WakeLatency
        | Figure::WakeLatencyIdle
        | Figure::AwaitLatency
        | Figure::LeaseCycleFresh => String::new(),
    };
    Ok(Fixture { process_id, ..fixture })
}

async fn run_round(figure: Figure, fixture: &Fixture, sizes: &Sizes, round: usize) -> Result<Sample> {
    let registry = fixture.registry();
    let process_id = fixture.process_id.as_str();
    Ok(match figure {
        Figure::Register => {
            // Built before the clock starts: the row times the registry.
            let registrations: Vec<_> =
                (0..sizes.registrations).map(|i| registration(&format!("reg-{round}-{i}"))).collect();
            let start = Instant::now();
            for registration in registrations {
                registry.register_process(registration).await.map_err(|err| format!("register: {err}"))?;
            }
            Sample::Throughput(per_second(sizes.registrations, start.elapsed()))
        }
        Figure::RegisterPreparation => {
            let registrations: Vec<_> =
                (0..sizes.registrations).map(|i| registration(&format!("prep-{round}-{i}"))).collect();
            let mut times = Vec::with_capacity(registrations.len());
            for registration in registrations {
                let start = Instant::now();
                match &fixture.preparation {
                    Some(preparation) => drop(std::hint::black_box(preparation.prepare(registration, 0)?)),
                    None => drop(std::hint::black_box(canonical_hash(&registration)?)),
                }
                times.push(start.elapsed());
            }
            Sample::Latencies(times)
        }
        Figure::AppendSequential | Figure::AppendSequentialHandoff => {
            // The forwarder is there only on the ceiling's forwarded side.
            let process_id: Arc<str> = format!("seq-{round}").into();
            register(registry, &process_id).await?;
            let forwarder = fixture.forwarder.as_ref();
            let start = Instant::now();
            for n in 0..sizes.sequential_appends {
                let appended = match forwarder {
                    Some(forwarder) => forwarder.append(&process_id, tick(n)).await,
                    None => registry.append_event(&process_id, tick(n)).await,
                };
                appended.map_err(|err| format!("append: {err}"))?;
            }
            Sample::Throughput(per_second(sizes.sequential_appends, start.elapsed()))
        }
        Figure::AppendBatch => {
            let process_id = format!("batch-{round}");
            register(registry, &process_id).await?;
            let batches = (sizes.sequential_appends / BATCH).max(1);
            let start = Instant::now();
            for batch in 0..batches {
                let requests = (0..BATCH).map(|n| tick(batch * BATCH + n)).collect();
                let appended = fixture.subject.batch.append_events(&process_id, requests).await;
                expect_len("batch", appended.map_err(|err| format!("append_events: {err}"))?.len(), BATCH)?;
            }
            Sample::Throughput(per_second(batches * BATCH, start.elapsed()))
        }
        Figure::AppendConcurrent => {
            let mut ids = Vec::new();
            for task in 0..sizes.concurrent_tasks {
                let process_id = format!("conc-{round}-{task}");
                register(registry, &process_id).await?;
                ids.push(process_id);
            }
            let appends = sizes.appends_per_task;
            let start = Instant::now();
            let tasks: Vec<_> = ids
                .into_iter()
                .map(|process_id| {
                    let registry = Arc::clone(registry);
                    tokio::spawn(async move {
                        for n in 0..appends {
                            registry
                                .append_event(&process_id, tick(n))
                                .await
                                .map_err(|err| format!("append: {err}"))?;
                        }
                        Ok::<_, BoxError>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            Sample::Throughput(per_second(sizes.concurrent_tasks * appends, start.elapsed()))
        }
        Figure::ConcurrentReads => {
            let reads = sizes.appends_per_task;
            let cursor = sizes.log_len.saturating_sub(10);
            let expected = sizes.log_len - cursor;
            let start = Instant::now();
            let tasks: Vec<_> = (0..sizes.concurrent_tasks)
                .map(|_| {
                    let (registry, process_id) = (Arc::clone(registry), process_id.to_owned());
                    tokio::spawn(async move {
                        for _ in 0..reads {
                            let events = registry.events_after(&process_id, cursor).await?;
                            expect_len("events_after", events.len(), expected)?;
                        }
                        Ok::<_, BoxError>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            Sample::Throughput(per_second(sizes.concurrent_tasks * reads, start.elapsed()))
        }
        Figure::EventsAfterHead => Sample::Latencies(
            time_each(sizes.head_samples, |_| async move {
                let events = registry.events_after(process_id, 0).await?;
                expect_len("events_after", events.len(), sizes.log_len)
            })
            .await?,
        ),
        Figure::EventsAfterTail => {
            let cursor = sizes.log_len.saturating_sub(10);
            Sample::Latencies(
                time_each(sizes.read_samples, |_| async move {
                    let events = registry.events_after(process_id, cursor).await?;
                    expect_len("events_after", events.len(), sizes.log_len - cursor)
                })
                .await?,
            )
        }
        Figure::CountEventsThrough => Sample::Latencies(
            time_each(sizes.read_samples, |_| async move {
                let counted = registry.count_events_through(process_id, SIGNAL, sizes.log_len).await?;
                expect_len("count_events_through", usize::try_from(counted)?, sizes.log_len / 10)
            })
            .await?,
        ),
        Figure::RecentEvents => Sample::Latencies(
            time_each(sizes.read_samples, |_| async move {
                let events = registry.recent_events(process_id, 10).await?;
                expect_len("recent_events", events.len(), sizes.log_len.min(10))
            })
            .await?,
        ),
        Figure::WakeLatency => {
            let process_id = format!("wake-{round}");
            register(registry, &process_id).await?;
            let mut times = Vec::new();
            for after in 0..sizes.park_samples {
                times.push(wake_once(&fixture.subject, &process_id, after).await?);
            }
            Sample::Latencies(times)
        }
        Figure::WakeLatencyIdle => {
            let process_id = format!("wake-idle-{round}");
            register(registry, &process_id).await?;
            let mut times = Vec::new();
            // Each sample idles: a tenth of the samples keeps the row short.
            for after in 0..(sizes.park_samples / 10).max(1) {
                times.push(wake_after_idle(&fixture.subject, &process_id, after, Some(IDLE_BEFORE_WAKE)).await?);
            }
            Sample::Latencies(times)
        }
        Figure::AwaitLatency => {
            let mut times = Vec::new();
            for i in 0..sizes.park_samples {
                let process_id = format!("await-{round}-{i}");
                register(registry, &process_id).await?;
                times.push(await_once(&fixture.subject, &process_id).await?);
            }
            Sample::Latencies(times)
        }
        Figure::LeaseCycle => {
            Sample::Latencies(time_each(sizes.lease_samples, |_| lease_cycle(registry, process_id)).await?)
        }
        Figure::RecordMutations => {
            Sample::Latencies(time_each(sizes.lease_samples, |n| record_mutations(registry, process_id, n)).await?)
        }
        Figure::LeaseCycleFresh => {
            // The registration is not timed: the row times the first calls
            // a process gets, as a job runner makes them right after
            // registering it.
            let mut times = Vec::with_capacity(usize::try_from(sizes.lease_samples).unwrap_or(0));
            for i in 0..sizes.lease_samples {
                let process_id = format!("fresh-{round}-{i}");
                register(registry, &process_id).await?;
                let start = Instant::now();
                lease_cycle(registry, &process_id).await?;
                times.push(start.elapsed());
            }
            Sample::Latencies(times)
        }
        Figure::ListProcesses => {
            let filter = &ProcessListFilter::any();
            Sample::Latencies(
                time_each(sizes.list_samples, |_| async move {
                    let records = registry.list_processes(filter).await?;
                    expect_len("list_processes", records.len(), sizes.listed_processes)
                })
                .await?,
            )
        }
        Figure::ListHandleGrants => {
            let scope = &fixture.scope;
            Sample::Latencies(
                time_each(sizes.grant_samples, |_| async move {
                    let entries = registry.list_handle_grants(scope).await?;
                    expect_len("list_handle_grants", entries.len(), sizes.grants)
                })
                .await?,
            )
        }
    })
}

/// Runs one figure for both registries, rounds interleaved.
async fn run_figure(figure: Figure, sizes: Sizes) -> Result<Row> {
    let actor = setup(figure, Kind::Actor, &sizes).await?;
    let baseline = setup(figure, Kind::Baseline, &sizes).await?;
    let (mut actor_samples, mut baseline_samples) = (Collected::default(), Collected::default());
    // Round 0 warms both up (first activations, allocator growth) and is
    // not recorded.
    for round in 0..=sizes.rounds {
        // Alternate who goes first (A B, B A, ...) so neither always runs
        // on a machine its rival just warmed up or disturbed.
        let order = if round % 2 == 0 { [Kind::Actor, Kind::Baseline] } else { [Kind::Baseline, Kind::Actor] };
        for kind in order {
            let (fixture, collected) = match kind {
                Kind::Actor => (&actor, &mut actor_samples),
                Kind::Baseline => (&baseline, &mut baseline_samples),
            };
            let sample = run_round(figure, fixture, &sizes, round)
                .await
                .map_err(|err| format!("{} / {}: {err}", figure.id(), kind.name()))?;
            if round > 0 {
                collected.add(sample);
            }
        }
    }
    actor.shutdown().await;
    baseline.shutdown().await;
    drop((actor, baseline));
    let unit = figure.unit();
    let row = Row::new(figure.id(), figure.label(&sizes), unit, actor_samples.side(unit), baseline_samples.side(unit));
    Ok(match figure {
        Figure::AppendSequentialHandoff => {
            let ratio = row.ratio;
            row.with_ratio(ratio, "forwarded/baseline", "the ceiling of the row above")
        }
        Figure::RegisterPreparation => {
            let ratio = row.ratio;
            row.with_ratio(
                ratio,
                "preparation/floor",
                "ratio = p50 of validation, hashing, schema checks and the record / p50 of the registration's \
                 canonical JSON hashed once, target <= 2",
            )
        }
        _ => row,
    })
}

/// Runs every figure, each in a child process of its own (this binary
/// re-executed with [`FIGURE_PHASE_FLAG`]): a figure then never runs on an
/// allocator that earlier figures fragmented, which made the throughput
/// figures swing by a third from run to run when they shared one process.
pub fn run_figures(args: &Args) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (index, figure) in Figure::ALL.into_iter().enumerate() {
        eprintln!("[{}/{}] {}", index + 1, Figure::ALL.len(), figure.label(&Sizes::new(args)));
        let mut child_args = vec![FIGURE_PHASE_FLAG.to_owned(), figure.id().to_owned()];
        if args.quick {
            child_args.push("--quick".to_owned());
        }
        if args.smoke {
            child_args.push("--smoke".to_owned());
        }
        if let Some(rounds) = args.rounds {
            child_args.extend(["--rounds".to_owned(), rounds.to_string()]);
        }
        if args.in_block_on {
            child_args.push("--in-block-on".to_owned());
        }
        rows.push(run_child(&format!("{} figure", figure.id()), &child_args, FIGURE_REPORT_PREFIX)?);
    }
    Ok(rows)
}

/// The child side: one figure, both registries interleaved, on a fresh
/// runtime; prints its [`Row`]. The driver is a task on the runtime's
/// workers, unless `in_block_on`: then it is the `block_on` future itself,
/// on a thread that is not a worker, so every message to an actor and
/// every reply crosses threads.
pub fn figure_phase(id: &str, sizes: Sizes, in_block_on: bool) -> Result<()> {
    let figure =
        Figure::ALL.into_iter().find(|figure| figure.id() == id).ok_or_else(|| format!("unknown figure {id:?}"))?;
    let runtime = runtime()?;
    let row = if in_block_on {
        runtime.block_on(run_figure(figure, sizes))?
    } else {
        runtime.block_on(async move { tokio::spawn(run_figure(figure, sizes)).await? })?
    };
    println!("{FIGURE_REPORT_PREFIX}{}", serde_json::to_string(&row)?);
    Ok(())
}
