//! # loadgen: the actor registry against the global-lock baseline, in one run
//!
//! ```text
//! cargo run --release --example loadgen [-- [--json PATH] [--quick] [--rounds N] [--processes N]]
//! ```
//!
//! Runs every figure of issue 4 for [`ActorProcessRegistry`] and for the
//! global-lock baseline ([`GlobalLockRegistry`]), both driven through
//! `Arc<dyn ProcessRegistry>` on one multi-thread tokio runtime with 2
//! workers (the driver itself runs as a task on it, so callers and actors
//! share the same 2 workers). For each figure both registries get their own
//! fixture, then the rounds alternate between them (actor, baseline,
//! baseline, actor, actor, ...), so machine noise hits both alike. A first
//! round of each figure warms both up and is not recorded.
//!
//! Throughputs are ops/s, one value per round; the table shows the median
//! over the rounds. Latencies are timed per operation with
//! [`std::time::Instant`]; the table shows p50 and p99 over all samples of
//! all rounds. The ratio is actor / baseline of the medians; each row says
//! whether higher or lower is better.
//!
//! The memory phase runs in two child processes (this binary re-executed
//! with `--memory-phase actor|baseline`), so the registries do not share an
//! allocator history: each registers `--processes` processes on a fresh
//! registry (the actor one configured by `actor_config_for_memory`), lets
//! it settle past the passivation idle time, and reports
//! (RSS after - RSS before) / processes, RSS read from `/proc/self/statm`.
//!
//! `--quick` shrinks every size (CI smoke run; a few seconds in debug).
//! `--json PATH` also writes the table, with machine information, as JSON.

use std::error::Error;
use std::fmt::Write as _;
use std::future::{poll_fn, Future};
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessHandleDescriptor,
    ProcessInput, ProcessLeaseCompletion, ProcessListFilter, ProcessRegistration, ProcessRegistry, RegistryConfig,
    SessionScope,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map};
use tokio::sync::oneshot;

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const TICK: &str = "bench.tick";
const SIGNAL: &str = "bench.signal";
const LEASE_TTL_MS: u64 = 60_000;
/// The hidden flag the memory phase re-executes this binary with.
const MEMORY_PHASE_FLAG: &str = "--memory-phase";
/// The line prefix a memory-phase child reports its result with.
const MEMORY_REPORT_PREFIX: &str = "LOADGEN-MEMORY ";
/// How long a process must see no call before its actor passivates, in the
/// memory phase.
const MEMORY_IDLE: Duration = Duration::from_millis(100);
/// How long the memory phase lets the registry settle (longer than
/// [`MEMORY_IDLE`]) before reading RSS.
const MEMORY_SETTLE: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const USAGE: &str = "\
usage: loadgen [--quick] [--json PATH] [--rounds N] [--processes N]

  --quick          small sizes and 2 rounds (a CI smoke run)
  --json PATH      also write the results as JSON to PATH
  --rounds N       rounds per figure (default 5, 2 with --quick)
  --processes N    processes registered by the memory phase
                   (default 100000, 2000 with --quick; the target is stated at 1000000)";

#[derive(Debug)]
struct Args {
    quick: bool,
    json: Option<PathBuf>,
    rounds: Option<usize>,
    processes: Option<u64>,
    memory_phase: Option<Kind>,
}

impl Args {
    fn parse() -> Result<Self> {
        let mut args = Self { quick: false, json: None, rounds: None, processes: None, memory_phase: None };
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            let mut value = |flag: &str| words.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            match word.as_str() {
                "--quick" => args.quick = true,
                "--json" => args.json = Some(PathBuf::from(value("--json")?)),
                "--rounds" => args.rounds = Some(parse_number("--rounds", &value("--rounds")?)?),
                "--processes" => args.processes = Some(parse_number("--processes", &value("--processes")?)?),
                MEMORY_PHASE_FLAG => {
                    args.memory_phase = Some(match value(MEMORY_PHASE_FLAG)?.as_str() {
                        "actor" => Kind::Actor,
                        "baseline" => Kind::Baseline,
                        other => return Err(format!("unknown registry kind {other:?} for {MEMORY_PHASE_FLAG}").into()),
                    });
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        Ok(args)
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let cleaned: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    cleaned.parse().map_err(|err| format!("{flag} {text:?}: {err}").into())
}

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// How much work each figure does per round.
#[derive(Clone, Copy, Debug, Serialize)]
struct Sizes {
    rounds: usize,
    /// Registrations per round (`register`).
    registrations: u64,
    /// Appends per round to one process (`append_sequential`).
    sequential_appends: u64,
    /// Concurrent tasks, each appending to its own process.
    concurrent_tasks: u64,
    /// Appends per task per round (`append_concurrent`).
    appends_per_task: u64,
    /// Events in the log the read figures use.
    log_len: u64,
    /// `events_after` from cursor 0 copies the whole log: fewer samples.
    head_samples: u64,
    /// Samples per round of the cheap reads.
    read_samples: u64,
    /// Samples per round of wake / await latency.
    park_samples: u64,
    /// Claim + renew + complete cycles per round.
    lease_samples: u64,
    /// Processes `list_processes` lists.
    listed_processes: u64,
    /// `list_processes` calls per round.
    list_samples: u64,
    /// Grants of the scope `list_handle_grants` lists.
    grants: u64,
    /// `list_handle_grants` calls per round.
    grant_samples: u64,
    /// Processes the memory phase registers.
    memory_processes: u64,
}

impl Sizes {
    fn new(args: &Args) -> Self {
        let mut sizes = if args.quick {
            Self {
                rounds: 2,
                registrations: 200,
                sequential_appends: 300,
                concurrent_tasks: 64,
                appends_per_task: 10,
                log_len: 1_000,
                head_samples: 10,
                read_samples: 100,
                park_samples: 50,
                lease_samples: 100,
                listed_processes: 2_000,
                list_samples: 3,
                grants: 100,
                grant_samples: 20,
                memory_processes: 2_000,
            }
        } else {
            Self {
                rounds: 5,
                registrations: 5_000,
                sequential_appends: 10_000,
                concurrent_tasks: 64,
                appends_per_task: 300,
                log_len: 10_000,
                head_samples: 40,
                read_samples: 2_000,
                park_samples: 1_000,
                lease_samples: 2_000,
                listed_processes: 100_000,
                list_samples: 3,
                grants: 1_000,
                grant_samples: 200,
                memory_processes: 100_000,
            }
        };
        if let Some(rounds) = args.rounds {
            sizes.rounds = rounds.max(1);
        }
        if let Some(processes) = args.processes {
            sizes.memory_processes = processes.max(1);
        }
        sizes
    }
}

// ---------------------------------------------------------------------------
// The two registries
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Actor,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Actor => "actor",
            Kind::Baseline => "baseline",
        }
    }
}

/// One registry behind the trait object both kinds are driven through.
struct Subject {
    registry: Arc<dyn ProcessRegistry>,
    actor: Option<ActorProcessRegistry>,
}

impl Subject {
    async fn start(kind: Kind) -> Result<Self> {
        Self::start_with(kind, RegistryConfig::default()).await
    }

    async fn start_with(kind: Kind, actor_config: RegistryConfig) -> Result<Self> {
        Ok(match kind {
            Kind::Actor => {
                let actor = ActorProcessRegistry::start(actor_config)
                    .await
                    .map_err(|err| format!("starting the actor registry: {err}"))?;
                Self { registry: Arc::new(actor.clone()), actor: Some(actor) }
            }
            Kind::Baseline => Self { registry: Arc::new(GlobalLockRegistry::new()), actor: None },
        })
    }

    async fn shutdown(&self) {
        if let Some(actor) = &self.actor {
            actor.shutdown().await;
        }
    }
}

/// The actor registry the memory phase measures: the ONE place its
/// configuration is decided.
///
/// Passivation of idle process actors (an idle actor stops, its committed
/// state stays in the store in a compact form, and the next call
/// re-activates it) is a [`RegistryConfig`] option, and it is switched on
/// HERE with an idle time ([`MEMORY_IDLE`]) shorter than [`MEMORY_SETTLE`],
/// so the memory figure measures idle, passivated processes whatever the
/// default idle time is.
fn actor_config_for_memory() -> RegistryConfig {
    RegistryConfig::default().with_passivation(Some(MEMORY_IDLE))
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

fn registration(process_id: &str) -> ProcessRegistration {
    let schema = json!({
        "type": "object",
        "properties": { "n": { "type": "integer" } },
        "required": ["n"],
    });
    let mut args = Map::new();
    args.insert("attempt".to_owned(), json!(1));
    ProcessRegistration::new(process_id, ProcessInput::definition("bench.job", args))
        .with_extra_event_types([ProcessEventType::new(TICK, schema.clone()), ProcessEventType::new(SIGNAL, schema)])
}

fn tick(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(TICK, json!({ "n": n }))
}

fn signal(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(SIGNAL, json!({ "n": n }))
}

async fn register(registry: &Arc<dyn ProcessRegistry>, process_id: &str) -> Result<()> {
    registry.register_process(registration(process_id)).await.map_err(|err| format!("register {process_id}: {err}"))?;
    Ok(())
}

/// Polls a parking call once. An answer on the first poll means the figure
/// would not measure a parked caller: an error. For the baseline, one poll
/// is enough to be parked: the call took the (fair, uncontended) lock,
/// found nothing and registered on the process's `Notify` before returning
/// `Pending`. For the actor it is not (the call may first have to activate
/// the process's actor): see [`until_parked`].
async fn poll_once<F: Future>(future: Pin<&mut F>) -> Result<()> {
    let mut future = Some(future);
    match poll_fn(|cx| Poll::Ready(future.take().map(|f| f.poll(cx).is_ready()))).await {
        Some(false) => Ok(()),
        _ => Err("the waiter was answered before it parked".into()),
    }
}

/// For the actor registry: waits until its count of parked callers exceeds
/// `before`, i.e. the waiter's message reached the process actor and parked.
async fn until_parked(actor: Option<&ActorProcessRegistry>, before: u64) -> Result<()> {
    let Some(actor) = actor else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while actor.stats().parked_waiters <= before {
        if Instant::now() > deadline {
            return Err("the waiter did not park within 10 s".into());
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}

fn parked_now(actor: Option<&ActorProcessRegistry>) -> u64 {
    actor.map_or(0, |actor| actor.stats().parked_waiters)
}

/// One wake: a spawned task parks in `wait_event_after(SIGNAL, after)`,
/// then this task appends the signal. The time from just before the append
/// to the waiter running again.
async fn wake_once(subject: &Subject, process_id: &str, after: u64) -> Result<Duration> {
    let (registry, actor) = (&subject.registry, subject.actor.as_ref());
    let before = parked_now(actor);
    let (parked_tx, parked_rx) = oneshot::channel();
    let waiter_registry = Arc::clone(registry);
    let waiter_process = process_id.to_owned();
    let waiter = tokio::spawn(async move {
        let mut wait = pin!(waiter_registry.wait_event_after(&waiter_process, SIGNAL, after));
        poll_once(wait.as_mut()).await?;
        let _ = parked_tx.send(());
        let event = wait.await.map_err(|err| format!("wait_event_after: {err}"))?;
        let woke = Instant::now();
        if event.sequence != after + 1 {
            return Err(format!("woken by sequence {}, expected {}", event.sequence, after + 1).into());
        }
        Ok::<_, BoxError>(woke)
    });
    // If the waiter failed before parking, its error is the one to report.
    if parked_rx.await.is_err() {
        waiter.await??;
        return Err("the waiter ended without parking".into());
    }
    until_parked(actor, before).await?;
    let start = Instant::now();
    registry.append_event(process_id, signal(after + 1)).await.map_err(|err| format!("append signal: {err}"))?;
    let woke = waiter.await??;
    Ok(woke.saturating_duration_since(start))
}

/// One await: a spawned task parks in `await_process`, then this task
/// completes the process. The time from just before `complete_process` to
/// the waiter running again.
async fn await_once(subject: &Subject, process_id: &str) -> Result<Duration> {
    let (registry, actor) = (&subject.registry, subject.actor.as_ref());
    let before = parked_now(actor);
    let (parked_tx, parked_rx) = oneshot::channel();
    let waiter_registry = Arc::clone(registry);
    let waiter_process = process_id.to_owned();
    let waiter = tokio::spawn(async move {
        let mut wait = pin!(waiter_registry.await_process(&waiter_process));
        poll_once(wait.as_mut()).await?;
        let _ = parked_tx.send(());
        wait.await.map_err(|err| format!("await_process: {err}"))?;
        Ok::<_, BoxError>(Instant::now())
    });
    if parked_rx.await.is_err() {
        waiter.await??;
        return Err("the waiter ended without parking".into());
    }
    until_parked(actor, before).await?;
    let start = Instant::now();
    registry
        .complete_process(process_id, ProcessAwaitOutput::success(json!({ "ok": true })))
        .await
        .map_err(|err| format!("complete_process: {err}"))?;
    let woke = waiter.await??;
    Ok(woke.saturating_duration_since(start))
}

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

fn expect_len(what: &str, got: usize, expected: u64) -> Result<()> {
    if got as u64 == expected {
        Ok(())
    } else {
        Err(format!("{what} returned {got} items, expected {expected}").into())
    }
}

// ---------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Figure {
    Register,
    AppendSequential,
    AppendConcurrent,
    EventsAfterHead,
    EventsAfterTail,
    CountEventsThrough,
    RecentEvents,
    WakeLatency,
    AwaitLatency,
    LeaseCycle,
    ListProcesses,
    ListHandleGrants,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    OpsPerSec,
    Micros,
    BytesPerProcess,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::Micros => "us",
            Unit::BytesPerProcess => "B/process",
        }
    }

    fn better(self) -> Better {
        match self {
            Unit::OpsPerSec => Better::Higher,
            Unit::Micros | Unit::BytesPerProcess => Better::Lower,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Better {
    Higher,
    Lower,
}

impl Figure {
    const ALL: [Figure; 12] = [
        Figure::Register,
        Figure::AppendSequential,
        Figure::AppendConcurrent,
        Figure::EventsAfterHead,
        Figure::EventsAfterTail,
        Figure::CountEventsThrough,
        Figure::RecentEvents,
        Figure::WakeLatency,
        Figure::AwaitLatency,
        Figure::LeaseCycle,
        Figure::ListProcesses,
        Figure::ListHandleGrants,
    ];

    /// A stable key for tracking (sizes are in `label` and `params`).
    fn id(self) -> &'static str {
        match self {
            Figure::Register => "register",
            Figure::AppendSequential => "append_sequential",
            Figure::AppendConcurrent => "append_concurrent",
            Figure::EventsAfterHead => "events_after_head",
            Figure::EventsAfterTail => "events_after_tail",
            Figure::CountEventsThrough => "count_events_through",
            Figure::RecentEvents => "recent_events_10",
            Figure::WakeLatency => "wake_latency",
            Figure::AwaitLatency => "await_latency",
            Figure::LeaseCycle => "lease_cycle",
            Figure::ListProcesses => "list_processes",
            Figure::ListHandleGrants => "list_handle_grants",
        }
    }

    fn label(self, sizes: &Sizes) -> String {
        let log = count(sizes.log_len);
        match self {
            Figure::Register => "register (sequential)".to_owned(),
            Figure::AppendSequential => "append, 1 process sequential".to_owned(),
            Figure::AppendConcurrent => format!("append, {} processes concurrent", sizes.concurrent_tasks),
            Figure::EventsAfterHead => format!("events_after, {log} log, cursor 0"),
            Figure::EventsAfterTail => {
                format!("events_after, {log} log, cursor {}", count(sizes.log_len.saturating_sub(10)))
            }
            Figure::CountEventsThrough => format!("count_events_through, {log} log"),
            Figure::RecentEvents => format!("recent_events(10), {log} log"),
            Figure::WakeLatency => "wake latency (wait_event_after <- append)".to_owned(),
            Figure::AwaitLatency => "await latency (await_process <- complete)".to_owned(),
            Figure::LeaseCycle => "lease claim+renew+complete".to_owned(),
            Figure::ListProcesses => format!("list_processes, {} processes", count(sizes.listed_processes)),
            Figure::ListHandleGrants => format!("list_handle_grants, {} grants", count(sizes.grants)),
        }
    }

    fn unit(self) -> Unit {
        match self {
            Figure::Register | Figure::AppendSequential | Figure::AppendConcurrent => Unit::OpsPerSec,
            _ => Unit::Micros,
        }
    }
}

/// A registry prepared for one figure.
struct Fixture {
    subject: Subject,
    process_id: String,
    scope: SessionScope,
}

impl Fixture {
    fn registry(&self) -> &Arc<dyn ProcessRegistry> {
        &self.subject.registry
    }
}

async fn setup(figure: Figure, kind: Kind, sizes: &Sizes) -> Result<Fixture> {
    let fixture = Fixture {
        subject: Subject::start(kind).await?,
        process_id: String::new(),
        scope: SessionScope::new("loadgen"),
    };
    let registry = fixture.registry();
    let process_id = match figure {
        Figure::EventsAfterHead | Figure::EventsAfterTail | Figure::CountEventsThrough | Figure::RecentEvents => {
            let process_id = "log".to_owned();
            register(registry, &process_id).await?;
            // Every 10th event is a signal, the others ticks.
            for n in 1..=sizes.log_len {
                let request = if n % 10 == 0 { signal(n) } else { tick(n) };
                registry.append_event(&process_id, request).await.map_err(|err| format!("fill the log: {err}"))?;
            }
            process_id
        }
        Figure::LeaseCycle => {
            register(registry, "leased").await?;
            "leased".to_owned()
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
        | Figure::AppendSequential
        | Figure::AppendConcurrent
        | Figure::WakeLatency
        | Figure::AwaitLatency => String::new(),
    };
    Ok(Fixture { process_id, ..fixture })
}

/// What one round of one figure measured.
enum Sample {
    Throughput(f64),
    Latencies(Vec<Duration>),
}

fn per_second(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

async fn run_round(figure: Figure, fixture: &Fixture, sizes: &Sizes, round: usize) -> Result<Sample> {
    let registry = fixture.registry();
    let process_id = fixture.process_id.as_str();
    Ok(match figure {
        Figure::Register => {
            let ids: Vec<String> = (0..sizes.registrations).map(|i| format!("reg-{round}-{i}")).collect();
            let start = Instant::now();
            for id in &ids {
                register(registry, id).await?;
            }
            Sample::Throughput(per_second(sizes.registrations, start.elapsed()))
        }
        Figure::AppendSequential => {
            let process_id = format!("seq-{round}");
            register(registry, &process_id).await?;
            let start = Instant::now();
            for n in 0..sizes.sequential_appends {
                registry.append_event(&process_id, tick(n)).await.map_err(|err| format!("append: {err}"))?;
            }
            Sample::Throughput(per_second(sizes.sequential_appends, start.elapsed()))
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
        Figure::AwaitLatency => {
            let mut times = Vec::new();
            for i in 0..sizes.park_samples {
                let process_id = format!("await-{round}-{i}");
                register(registry, &process_id).await?;
                times.push(await_once(&fixture.subject, &process_id).await?);
            }
            Sample::Latencies(times)
        }
        Figure::LeaseCycle => Sample::Latencies(
            time_each(sizes.lease_samples, |_| async move {
                let lease = registry.claim_process_lease(process_id, "loadgen-worker", LEASE_TTL_MS).await?;
                let lease = registry.renew_process_lease(&lease, LEASE_TTL_MS).await?;
                registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await?;
                Ok(())
            })
            .await?,
        ),
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

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

/// One registry's result for one figure.
#[derive(Clone, Debug, Default, Serialize)]
struct Side {
    /// Throughput: the median of the rounds. Latency: p50 of all samples.
    median: Option<f64>,
    /// Latency only: p99 of all samples.
    p99: Option<f64>,
    /// Throughput: each round's value. Latency: each round's p50.
    rounds: Vec<f64>,
    /// Latency samples taken (all rounds).
    samples: usize,
}

/// Accumulates one registry's samples over the rounds.
#[derive(Default)]
struct Collected {
    round_values: Vec<f64>,
    latencies_us: Vec<f64>,
}

impl Collected {
    fn add(&mut self, sample: Sample) {
        match sample {
            Sample::Throughput(ops) => self.round_values.push(ops),
            Sample::Latencies(times) => {
                let mut micros: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
                micros.sort_by(f64::total_cmp);
                if let Some(p50) = percentile(&micros, 0.50) {
                    self.round_values.push(p50);
                }
                self.latencies_us.extend(micros);
            }
        }
    }

    fn side(mut self, unit: Unit) -> Side {
        if unit == Unit::Micros {
            self.latencies_us.sort_by(f64::total_cmp);
            Side {
                median: percentile(&self.latencies_us, 0.50),
                p99: percentile(&self.latencies_us, 0.99),
                rounds: self.round_values,
                samples: self.latencies_us.len(),
            }
        } else {
            let mut sorted = self.round_values.clone();
            sorted.sort_by(f64::total_cmp);
            Side { median: median(&sorted), p99: None, rounds: self.round_values, samples: 0 }
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(n / 2).copied(),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[derive(Clone, Debug, Serialize)]
struct Row {
    id: String,
    label: String,
    unit: Unit,
    better: Better,
    actor: Side,
    baseline: Side,
    /// actor median / baseline median.
    ratio: Option<f64>,
    /// Why there is no figure yet, if there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl Row {
    fn new(id: &str, label: String, unit: Unit, actor: Side, baseline: Side) -> Self {
        let ratio = match (actor.median, baseline.median) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        Self { id: id.to_owned(), label, unit, better: unit.better(), actor, baseline, ratio, note: None }
    }

    fn not_available(id: &str, label: &str, unit: Unit, note: &str) -> Self {
        let mut row = Self::new(id, label.to_owned(), unit, Side::default(), Side::default());
        row.note = Some(note.to_owned());
        row
    }
}

// ---------------------------------------------------------------------------
// Memory phase
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MemoryReport {
    kind: Kind,
    processes: u64,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    bytes_per_process: f64,
    register_seconds: f64,
    /// Actor registry only: process actors alive when RSS was read.
    live_actors: Option<u64>,
}

fn page_size() -> u64 {
    Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096)
}

/// Resident set size of this process, from `/proc/self/statm`.
fn rss_bytes(page_size: u64) -> Result<u64> {
    let statm =
        std::fs::read_to_string("/proc/self/statm").map_err(|err| format!("reading /proc/self/statm: {err}"))?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("/proc/self/statm has no resident field")?
        .parse()
        .map_err(|err| format!("/proc/self/statm resident field: {err}"))?;
    Ok(resident * page_size)
}

/// The child side: register `processes` processes on a fresh registry and
/// print a [`MemoryReport`] line.
fn memory_phase(kind: Kind, processes: u64) -> Result<()> {
    let page_size = page_size();
    let runtime = runtime()?;
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            let config = actor_config_for_memory();
            let subject = Subject::start_with(kind, config).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rss_before = rss_bytes(page_size)?;
            let start = Instant::now();
            for i in 0..processes {
                register(&subject.registry, &format!("memory-{i:08}")).await?;
            }
            let register_seconds = start.elapsed().as_secs_f64();
            tokio::time::sleep(MEMORY_SETTLE).await;
            let rss_after = rss_bytes(page_size)?;
            let live_actors = subject.actor.as_ref().map(|actor| actor.stats().live_actors);
            Ok::<_, BoxError>(MemoryReport {
                kind,
                processes,
                rss_before_bytes: rss_before,
                rss_after_bytes: rss_after,
                bytes_per_process: rss_after.saturating_sub(rss_before) as f64 / processes as f64,
                register_seconds,
                live_actors,
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
    let exe = std::env::current_exe().map_err(|err| format!("locating this executable: {err}"))?;
    let output = Command::new(&exe)
        .args([MEMORY_PHASE_FLAG, kind.name(), "--processes", &processes.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running the {} memory phase ({}): {err}", kind.name(), exe.display()))?;
    if !output.status.success() {
        return Err(format!("the {} memory phase failed: {}", kind.name(), output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(MEMORY_REPORT_PREFIX))
        .ok_or_else(|| format!("the {} memory phase printed no report", kind.name()))?;
    Ok(serde_json::from_str(line).map_err(|err| format!("the {} memory report: {err}", kind.name()))?)
}

// ---------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| format!("building the tokio runtime: {err}"))?)
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
    actor.subject.shutdown().await;
    baseline.subject.shutdown().await;
    drop((actor, baseline));
    let unit = figure.unit();
    Ok(Row::new(figure.id(), figure.label(&sizes), unit, actor_samples.side(unit), baseline_samples.side(unit)))
}

async fn run_figures(sizes: Sizes) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (index, figure) in Figure::ALL.into_iter().enumerate() {
        eprintln!("[{}/{}] {}", index + 1, Figure::ALL.len(), figure.label(&sizes));
        rows.push(run_figure(figure, sizes).await?);
    }
    Ok(rows)
}

fn memory_row(sizes: &Sizes) -> Result<(Row, Vec<MemoryReport>)> {
    eprintln!("[memory] registering {} processes per registry, each in a child process", count(sizes.memory_processes));
    let actor = run_memory_child(Kind::Actor, sizes.memory_processes)?;
    let baseline = run_memory_child(Kind::Baseline, sizes.memory_processes)?;
    let side = |report: &MemoryReport| Side {
        median: Some(report.bytes_per_process),
        p99: None,
        rounds: vec![report.bytes_per_process],
        samples: 0,
    };
    let label = format!("RSS per idle process, {} processes", count(sizes.memory_processes));
    let row = Row::new("memory_per_process", label, Unit::BytesPerProcess, side(&actor), side(&baseline));
    Ok((row, vec![actor, baseline]))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// `1234567` as `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn format_value(value: Option<f64>, unit: Unit) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) => match unit {
            Unit::OpsPerSec | Unit::BytesPerProcess => count(v.round() as u64),
            Unit::Micros if v >= 1_000.0 => count(v.round() as u64),
            Unit::Micros if v >= 100.0 => format!("{v:.0}"),
            Unit::Micros => format!("{v:.2}"),
        },
    }
}

fn render_table(rows: &[Row]) -> String {
    let header = [
        "figure",
        "unit",
        "better",
        "actor p50/median",
        "baseline p50/median",
        "actor p99",
        "baseline p99",
        "actor/baseline",
        "",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let (ratio, verdict) = match (row.ratio, &row.note) {
                (_, Some(note)) => ("n/a".to_owned(), note.clone()),
                (Some(ratio), None) => {
                    let actor_wins = match row.better {
                        Better::Higher => ratio > 1.0,
                        Better::Lower => ratio < 1.0,
                    };
                    (format!("{ratio:.2}x"), if actor_wins { "actor better" } else { "baseline better" }.to_owned())
                }
                (None, None) => ("-".to_owned(), String::new()),
            };
            let na = |value: String| if row.note.is_some() { "n/a".to_owned() } else { value };
            [
                row.label.clone(),
                row.unit.label().to_owned(),
                match row.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                }
                .to_owned(),
                na(format_value(row.actor.median, row.unit)),
                na(format_value(row.baseline.median, row.unit)),
                na(format_value(row.actor.p99, row.unit)),
                na(format_value(row.baseline.p99, row.unit)),
                ratio,
                verdict,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 3 || i == 8 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|width| "-".repeat(width)));
    for row in &cells {
        line(row);
    }
    out
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc_timestamp(epoch_seconds: u64) -> String {
    let days = i64::try_from(epoch_seconds / 86_400).unwrap_or(0);
    let seconds_of_day = epoch_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds_of_day / 3_600,
        seconds_of_day % 3_600 / 60,
        seconds_of_day % 60
    )
}

fn report_json(
    args: &Args,
    sizes: &Sizes,
    rows: &[Row],
    memory: &[MemoryReport],
    started: SystemTime,
) -> serde_json::Value {
    let epoch_seconds = started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "schema_version": 1,
        "timestamp_unix_s": epoch_seconds,
        "timestamp_utc": utc_timestamp(epoch_seconds),
        "machine": {
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "cpu_model": cpu_model(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "build": { "profile": if cfg!(debug_assertions) { "debug" } else { "release" } },
        "runtime": { "flavor": "multi_thread", "worker_threads": 2 },
        "quick": args.quick,
        "params": sizes,
        "ratio": "actor median / baseline median",
        "figures": rows,
        "memory_phase": memory,
    })
}

fn main() {
    if let Err(err) = run() {
        eprintln!("loadgen: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::parse()?;
    let sizes = Sizes::new(&args);
    if let Some(kind) = args.memory_phase {
        return memory_phase(kind, sizes.memory_processes);
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    eprintln!(
        "loadgen: {} build, {} rounds per figure, actor and baseline interleaved",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        sizes.rounds
    );
    let runtime = runtime()?;
    let mut rows = runtime.block_on(async move { tokio::spawn(run_figures(sizes)).await? })?;
    drop(runtime);
    rows.push(Row::not_available(
        "activation_latency",
        "activation latency (passivated -> active)",
        Unit::Micros,
        "not measured yet",
    ));
    let (memory, memory_reports) = memory_row(&sizes)?;
    rows.push(memory);

    println!("{}", render_table(&rows));
    println!(
        "ratio = actor / baseline of the medians; latencies: p50 and p99 over all samples of {} rounds; \
         throughputs: median of {} rounds. {} cores, {:.1} s.",
        sizes.rounds,
        sizes.rounds,
        std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        clock.elapsed().as_secs_f64()
    );
    for report in &memory_reports {
        println!(
            "memory {}: RSS {} -> {} bytes for {} processes (registered in {:.2} s{})",
            report.kind.name(),
            count(report.rss_before_bytes),
            count(report.rss_after_bytes),
            count(report.processes),
            report.register_seconds,
            report.live_actors.map(|n| format!(", {} live actors", count(n))).unwrap_or_default()
        );
    }
    if let Some(path) = &args.json {
        let json = report_json(&args, &sizes, &rows, &memory_reports, started);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").map_err(|err| format!("writing {}: {err}", path.display()))?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    Ok(())
}
