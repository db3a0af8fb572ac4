//! # loadgen: the actor registry against the global-lock baseline, in one run
//!
//! ```text
//! cargo run --release --example loadgen [-- [--json PATH] [--quick] [--rounds N] [--processes N]
//!                                           [--callers N] [--only PHASES] [--in-block-on]]
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
//! One row is not a registry of its own: `append_sequential_handoff_ceiling`
//! runs the sequential append on the baseline with one `ractor` actor in
//! front of it ([`Forwarder`]; its "actor" column), against the bare
//! baseline. That is the baseline's own work plus the one message per call
//! the design requires, so its ratio bounds what any registry built that
//! way can reach on the row above, in the same run.
//!
//! Throughputs are ops/s, one value per round; the table shows the median
//! over the rounds. Latencies are timed per operation with
//! [`std::time::Instant`]; the table shows p50 and p99 over all samples of
//! all rounds. The ratio is actor / baseline of the medians unless the row
//! says otherwise; each row says whether higher or lower is better.
//!
//! Four phases, any subset selectable with `--only`:
//!
//! - `figures`: the per-operation figures above.
//! - `activation`: activation latency. An actor registry with passivation
//!   after [`PASSIVATION_IDLE`] registers `M` processes and calls each once
//!   (`events_after(id, 0)`), so each has had an actor; the driver waits
//!   until every actor has passivated (`live_actors == 0`,
//!   `passivations >= M`), then calls `events_after(id, 0)` on each process
//!   twice in a row: the first call (cold) activates its actor, the second
//!   (warm) finds it running. The baseline has no activation: it gets the
//!   same fixture and the same two calls, which are plain `events_after`.
//! - `memory`: RSS per process, in child processes (this binary re-executed
//!   with `--memory-phase actor|baseline`), so the registries do not share
//!   an allocator history. Each registers `--processes` processes from
//!   [`LOAD_TASKS`] concurrent tasks, settles, reads RSS ("registered, never
//!   called"), then calls `events_after(id, 0)` once on every process; the
//!   actor child then waits until every actor has passivated. After a
//!   settle it reads RSS again ("called once"). Per process:
//!   (RSS then - RSS before registering) / processes, RSS read from
//!   `/proc/self/statm`.
//! - `flood`: issue 3 item 3, in child processes (`--flood-phase
//!   actor|baseline`): `--callers` tasks, released at once, each append one
//!   event to ONE process; the actor registry has the default mailbox bound
//!   ([`MailboxConfig::default`]: 1,024 calls in flight, callers beyond wait).
//!   A thread samples RSS every [`FLOOD_SAMPLE_EVERY`]; the figure is
//!   (peak RSS - RSS before the callers were spawned) / callers, which
//!   includes each caller's own task (the same on both sides) and the
//!   appended events.
//!
//! `--in-block-on` drives the figures from the runtime's `block_on` future,
//! as the body of `#[tokio::main]` runs, instead of from a task on its
//! workers: it shows what a caller that is not a worker pays per call.
//!
//! `--quick` shrinks every size (CI smoke run; a few seconds in debug).
//! `--json PATH` also writes the table, with machine information, as JSON.

use std::collections::BTreeSet;
use std::error::Error;
use std::fmt::Write as _;
use std::future::{poll_fn, Future};
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, MailboxConfig, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventAppendResult,
    ProcessHandleDescriptor, ProcessLeaseCompletion, ProcessListFilter, ProcessRegistry, RegistryConfig, RegistryError,
    RegistryStats, SessionScope,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
#[path = "../benches/support/workload.rs"]
mod workload;

use tokio::sync::{oneshot, watch};
use workload::{registration, signal, tick, SIGNAL};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const LEASE_TTL_MS: u64 = 60_000;
/// The hidden flag the memory phase re-executes this binary with.
const MEMORY_PHASE_FLAG: &str = "--memory-phase";
/// The line prefix a memory-phase child reports its result with.
const MEMORY_REPORT_PREFIX: &str = "LOADGEN-MEMORY ";
/// The hidden flag the flood phase re-executes this binary with.
const FLOOD_PHASE_FLAG: &str = "--flood-phase";
/// The hidden flag each figure re-executes this binary with.
const FIGURE_PHASE_FLAG: &str = "--figure-phase";
/// The line prefix a figure child reports its row with.
const FIGURE_REPORT_PREFIX: &str = "LOADGEN-FIGURE ";
/// The line prefix a flood-phase child reports its result with.
const FLOOD_REPORT_PREFIX: &str = "LOADGEN-FLOOD ";
/// How long a process must see no call before its actor passivates, in the
/// activation and memory phases.
const PASSIVATION_IDLE: Duration = Duration::from_millis(50);
/// How long the memory phase lets the registry settle before reading RSS.
const MEMORY_SETTLE: Duration = Duration::from_millis(500);
/// How long waiting for every actor to passivate may take.
const PASSIVATION_DEADLINE: Duration = Duration::from_secs(60);
/// Concurrent tasks that register and call the memory phase's processes.
const LOAD_TASKS: u64 = 8;
/// The memory phase holds its callers back while more actors than this are
/// alive (waiting for passivation), so calling a million processes never
/// keeps a million actors alive at once.
const MAX_LIVE_ACTORS: u64 = 50_000;
/// How often the flood phase samples RSS.
const FLOOD_SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// The process the flood phase floods.
const FLOOD_PROCESS: &str = "flood";

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

const USAGE: &str = "\
usage: loadgen [--quick] [--json PATH] [--rounds N] [--processes N] [--callers N] [--only PHASES]
               [--in-block-on]

  --quick          small sizes and 2 rounds (a CI smoke run)
  --json PATH      also write the results as JSON to PATH
  --rounds N       rounds per figure (default 5, 2 with --quick)
  --processes N    processes registered by the memory phase
                   (default 100000, 2000 with --quick; the target is stated at 1000000)
  --callers N      concurrent callers of the flood phase (default 100000, 10000 with --quick)
  --only PHASES    run only these phases, comma-separated, of:
                   figures, activation, memory, flood (default: all)
  --in-block-on    drive the figures from the runtime's block_on instead of
                   a task on its workers, as the body of #[tokio::main] runs";

/// The parts of a run `--only` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Figures,
    Activation,
    Memory,
    Flood,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Figures, Phase::Activation, Phase::Memory, Phase::Flood];

    fn name(self) -> &'static str {
        match self {
            Phase::Figures => "figures",
            Phase::Activation => "activation",
            Phase::Memory => "memory",
            Phase::Flood => "flood",
        }
    }
}

#[derive(Debug)]
struct Args {
    quick: bool,
    json: Option<PathBuf>,
    rounds: Option<usize>,
    processes: Option<u64>,
    callers: Option<u64>,
    only: BTreeSet<Phase>,
    in_block_on: bool,
    memory_phase: Option<Kind>,
    flood_phase: Option<Kind>,
    figure_phase: Option<String>,
}

fn parse_kind(flag: &str, text: &str) -> Result<Kind> {
    match text {
        "actor" => Ok(Kind::Actor),
        "baseline" => Ok(Kind::Baseline),
        other => Err(format!("unknown registry kind {other:?} for {flag}").into()),
    }
}

fn parse_phases(text: &str) -> Result<BTreeSet<Phase>> {
    let mut phases = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let phase = Phase::ALL
            .into_iter()
            .find(|phase| phase.name() == name)
            .ok_or_else(|| format!("unknown phase {name:?} for --only\n{USAGE}"))?;
        phases.insert(phase);
    }
    if phases.is_empty() {
        return Err(format!("--only needs at least one phase\n{USAGE}").into());
    }
    Ok(phases)
}

impl Args {
    fn parse() -> Result<Self> {
        let mut args = Self {
            quick: false,
            json: None,
            rounds: None,
            processes: None,
            callers: None,
            only: Phase::ALL.into_iter().collect(),
            in_block_on: false,
            memory_phase: None,
            flood_phase: None,
            figure_phase: None,
        };
        let mut words = std::env::args().skip(1);
        while let Some(word) = words.next() {
            let mut value = |flag: &str| words.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            match word.as_str() {
                "--quick" => args.quick = true,
                "--json" => args.json = Some(PathBuf::from(value("--json")?)),
                "--rounds" => args.rounds = Some(parse_number("--rounds", &value("--rounds")?)?),
                "--processes" => args.processes = Some(parse_number("--processes", &value("--processes")?)?),
                "--callers" => args.callers = Some(parse_number("--callers", &value("--callers")?)?),
                "--only" => args.only = parse_phases(&value("--only")?)?,
                "--in-block-on" => args.in_block_on = true,
                MEMORY_PHASE_FLAG => {
                    args.memory_phase = Some(parse_kind(MEMORY_PHASE_FLAG, &value(MEMORY_PHASE_FLAG)?)?)
                }
                FIGURE_PHASE_FLAG => args.figure_phase = Some(value(FIGURE_PHASE_FLAG)?),
                FLOOD_PHASE_FLAG => args.flood_phase = Some(parse_kind(FLOOD_PHASE_FLAG, &value(FLOOD_PHASE_FLAG)?)?),
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
    /// Processes the activation phase passivates and re-activates.
    activation_processes: u64,
    /// Processes the memory phase registers.
    memory_processes: u64,
    /// Concurrent callers the flood phase sends to one process.
    flood_callers: u64,
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
                activation_processes: 500,
                memory_processes: 2_000,
                flood_callers: 10_000,
            }
        } else {
            Self {
                rounds: 5,
                registrations: 5_000,
                sequential_appends: 10_000,
                concurrent_tasks: 64,
                appends_per_task: 2_000,
                log_len: 10_000,
                head_samples: 40,
                read_samples: 2_000,
                park_samples: 1_000,
                lease_samples: 2_000,
                listed_processes: 100_000,
                list_samples: 3,
                grants: 1_000,
                grant_samples: 200,
                activation_processes: 10_000,
                memory_processes: 100_000,
                flood_callers: 100_000,
            }
        };
        if let Some(rounds) = args.rounds {
            sizes.rounds = rounds.max(1);
        }
        if let Some(processes) = args.processes {
            sizes.memory_processes = processes.max(1);
        }
        if let Some(callers) = args.callers {
            sizes.flood_callers = callers.max(1);
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
    /// Only for the handoff ceiling: an actor in front of `registry`.
    forwarder: Option<Forwarder>,
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
                Self { registry: Arc::new(actor.clone()), actor: Some(actor), forwarder: None }
            }
            Kind::Baseline => Self { registry: Arc::new(GlobalLockRegistry::new()), actor: None, forwarder: None },
        })
    }

    /// The baseline with a [`Forwarder`] in front of it.
    async fn baseline_behind_an_actor() -> Result<Self> {
        let registry: Arc<dyn ProcessRegistry> = Arc::new(GlobalLockRegistry::new());
        let forwarder = Forwarder::start(Arc::clone(&registry)).await?;
        Ok(Self { registry, actor: None, forwarder: Some(forwarder) })
    }

    async fn shutdown(&self) {
        if let Some(actor) = &self.actor {
            actor.shutdown().await;
        }
        if let Some(forwarder) = &self.forwarder {
            forwarder.actor.stop(None);
        }
    }
}

/// The handoff ceiling: the global-lock baseline behind one `ractor` actor.
///
/// Each append is a message to an actor that calls the baseline and replies
/// with its answer: exactly the baseline's work plus the one handoff per
/// call that the design requires (a facade that sends each call to the
/// process's actor and awaits the reply). No registry built that way can
/// append faster on this machine and runtime, so this row's ratio to the
/// bare baseline bounds the `append, 1 process sequential` ratio.
struct Forwarder {
    actor: ractor::ActorRef<ForwardedAppend>,
}

/// One append handed to the [`Forwarder`].
struct ForwardedAppend {
    process_id: Arc<str>,
    request: ProcessEventAppendRequest,
    reply: ractor::RpcReplyPort<Result<ProcessEventAppendResult, RegistryError>>,
}

/// The forwarding actor: it owns nothing but the registry it calls.
struct ForwardingActor {
    registry: Arc<dyn ProcessRegistry>,
}

impl ractor::Actor for ForwardingActor {
    type Msg = ForwardedAppend;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        _args: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ractor::ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let result = self.registry.append_event(&message.process_id, message.request).await;
        // The driver awaits every reply; a dropped one fails its round.
        let _ = message.reply.send(result);
        Ok(())
    }
}

impl Forwarder {
    async fn start(registry: Arc<dyn ProcessRegistry>) -> Result<Self> {
        let (actor, _) = ractor::Actor::spawn(None, ForwardingActor { registry }, ())
            .await
            .map_err(|err| format!("starting the forwarding actor: {err}"))?;
        Ok(Self { actor })
    }

    async fn append(
        &self,
        process_id: &Arc<str>,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, RegistryError> {
        let sent = Arc::clone(process_id);
        match self.actor.call(|reply| ForwardedAppend { process_id: sent, request, reply }, None).await {
            Ok(ractor::rpc::CallResult::Success(result)) => result,
            _ => Err(RegistryError::Stopped { process_id: process_id.to_string() }),
        }
    }
}

/// The actor registry the activation and memory phases measure: the ONE
/// place its configuration is decided.
///
/// Passivation of idle process actors (an idle actor stops, its committed
/// state stays in the store in a compact form, and the next call
/// re-activates it) is a [`RegistryConfig`] option, and it is switched on
/// HERE with a short idle time ([`PASSIVATION_IDLE`]), so both phases
/// measure passivated processes whatever the default idle time is. The
/// mailbox bound and everything else stay at their defaults.
fn passivating_actor_config() -> RegistryConfig {
    RegistryConfig::default().with_passivation(Some(PASSIVATION_IDLE))
}

/// Waits until no process actor is alive and at least `passivations`
/// passivations have been counted, polling `stats()` every 2 ms and asking
/// for a passivation sweep every half idle time; fails after
/// [`PASSIVATION_DEADLINE`]. Returns the stats it stopped at.
async fn until_passivated(actor: &ActorProcessRegistry, passivations: u64) -> Result<RegistryStats> {
    let start = Instant::now();
    let mut swept = start;
    loop {
        let stats = actor.stats();
        if stats.live_actors == 0 && stats.passivations >= passivations {
            return Ok(stats);
        }
        if start.elapsed() > PASSIVATION_DEADLINE {
            return Err(format!(
                "actors did not passivate within {:?}: {} live, {} of {} passivations",
                PASSIVATION_DEADLINE, stats.live_actors, stats.passivations, passivations
            )
            .into());
        }
        if swept.elapsed() >= PASSIVATION_IDLE / 2 {
            actor.passivate_idle();
            swept = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------
// Workload
// ---------------------------------------------------------------------------

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
    AppendSequentialHandoff,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    OpsPerSec,
    Micros,
    BytesPerProcess,
    BytesPerCaller,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::Micros => "us",
            Unit::BytesPerProcess => "B/process",
            Unit::BytesPerCaller => "B/caller",
        }
    }

    fn better(self) -> Better {
        match self {
            Unit::OpsPerSec => Better::Higher,
            Unit::Micros | Unit::BytesPerProcess | Unit::BytesPerCaller => Better::Lower,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Better {
    Higher,
    Lower,
}

impl Figure {
    const ALL: [Figure; 13] = [
        Figure::Register,
        Figure::AppendSequential,
        Figure::AppendSequentialHandoff,
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
            Figure::AppendSequentialHandoff => "append_sequential_handoff_ceiling",
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
            Figure::AppendSequentialHandoff => "  same, baseline behind 1 actor (ceiling)".to_owned(),
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
            Figure::Register
            | Figure::AppendSequential
            | Figure::AppendSequentialHandoff
            | Figure::AppendConcurrent => Unit::OpsPerSec,
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
    let subject = match (figure, kind) {
        (Figure::AppendSequentialHandoff, Kind::Actor) => Subject::baseline_behind_an_actor().await?,
        _ => Subject::start(kind).await?,
    };
    let fixture = Fixture { subject, process_id: String::new(), scope: SessionScope::new("loadgen") };
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
        | Figure::AppendSequentialHandoff
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
        Figure::AppendSequential | Figure::AppendSequentialHandoff => {
            // The forwarder is there only on the ceiling's forwarded side.
            let process_id: Arc<str> = format!("seq-{round}").into();
            register(registry, &process_id).await?;
            let forwarder = fixture.subject.forwarder.as_ref();
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
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
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

/// What [`Row::ratio`] divides, when it is not the default.
const ACTOR_OVER_BASELINE: &str = "actor/baseline";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Row {
    id: String,
    label: String,
    unit: Unit,
    better: Better,
    actor: Side,
    baseline: Side,
    /// `ratio_of`, of the medians (p50 for latencies).
    ratio: Option<f64>,
    /// What `ratio` divides: `actor/baseline` unless the row says otherwise.
    ratio_of: String,
    /// What the table says instead of who is better, when that verdict
    /// would mislead (the ratio is not actor/baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

impl Row {
    fn new(id: &str, label: String, unit: Unit, actor: Side, baseline: Side) -> Self {
        let ratio = ratio_of_medians(&actor, &baseline);
        Self {
            id: id.to_owned(),
            label,
            unit,
            better: unit.better(),
            actor,
            baseline,
            ratio,
            ratio_of: ACTOR_OVER_BASELINE.to_owned(),
            comment: None,
        }
    }

    /// Replaces the ratio with `ratio`, which divides `ratio_of`; `comment`
    /// takes the place of the verdict.
    fn with_ratio(mut self, ratio: Option<f64>, ratio_of: &str, comment: &str) -> Self {
        self.ratio = ratio;
        self.ratio_of = ratio_of.to_owned();
        self.comment = Some(comment.to_owned());
        self
    }

    fn with_comment(mut self, comment: String) -> Self {
        self.comment = Some(comment);
        self
    }
}

fn ratio_of_medians(numerator: &Side, denominator: &Side) -> Option<f64> {
    match (numerator.median, denominator.median) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The [`Side`] of one latency measurement (one round of samples).
fn latency_side(times: Vec<Duration>) -> Side {
    let mut collected = Collected::default();
    collected.add(Sample::Latencies(times));
    collected.side(Unit::Micros)
}

/// The [`Side`] of a single value (no rounds, no p99).
fn single_side(value: f64) -> Side {
    Side { median: Some(value), p99: None, rounds: vec![value], samples: 0 }
}

// ---------------------------------------------------------------------------
// Activation phase
// ---------------------------------------------------------------------------

/// What the activation phase saw on the actor registry, besides latencies.
#[derive(Clone, Debug, Serialize)]
struct ActivationReport {
    processes: u64,
    /// Passivation idle time of the registry, ms.
    idle_ms: u64,
    /// Stats after every process had been called once.
    stats_called: RegistryStats,
    /// Stats once every actor had passivated, before the timed calls.
    stats_passivated: RegistryStats,
    /// Stats after the timed calls.
    stats_after: RegistryStats,
    /// From the last untimed call to `live_actors == 0`.
    passivate_wait_seconds: f64,
    /// Timed first calls during which `activations` did not grow by exactly
    /// one (0 when every cold call measured one activation).
    cold_calls_not_activating: u64,
    /// Timed second calls during which `activations` grew (0 when every warm
    /// call found its actor running).
    warm_calls_activating: u64,
}

fn activation_id(i: u64) -> String {
    format!("activation-{i:06}")
}

/// Registers `processes` processes on `subject` and calls each once.
async fn activation_fixture(subject: &Subject, processes: u64) -> Result<()> {
    for i in 0..processes {
        register(&subject.registry, &activation_id(i)).await?;
    }
    for i in 0..processes {
        let events = subject.registry.events_after(&activation_id(i), 0).await?;
        expect_len("events_after", events.len(), 0)?;
    }
    Ok(())
}

/// Times `events_after(id, 0)` on `id`.
async fn time_events_after(registry: &Arc<dyn ProcessRegistry>, id: &str) -> Result<Duration> {
    let start = Instant::now();
    let events = registry.events_after(id, 0).await?;
    let elapsed = start.elapsed();
    expect_len("events_after", events.len(), 0)?;
    Ok(elapsed)
}

/// The activation rows: cold (first call on a passivated process) and warm
/// (the same call again) for the actor; two plain `events_after` calls on
/// the same fixture for the baseline.
async fn activation_phase(sizes: Sizes) -> Result<(Vec<Row>, ActivationReport)> {
    let processes = sizes.activation_processes;

    let subject = Subject::start_with(Kind::Actor, passivating_actor_config()).await?;
    let actor = subject.actor.clone().ok_or("the actor subject has no actor registry")?;
    activation_fixture(&subject, processes).await?;
    let stats_called = actor.stats();
    if stats_called.activations < processes {
        return Err(format!("{} activations after calling {processes} processes", stats_called.activations).into());
    }
    let waiting = Instant::now();
    let stats_passivated = until_passivated(&actor, processes).await?;
    let passivate_wait_seconds = waiting.elapsed().as_secs_f64();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let (mut cold_calls_not_activating, mut warm_calls_activating) = (0, 0);
    for i in 0..processes {
        let id = activation_id(i);
        let before = actor.stats().activations;
        cold.push(time_events_after(&subject.registry, &id).await?);
        let between = actor.stats().activations;
        warm.push(time_events_after(&subject.registry, &id).await?);
        let after = actor.stats().activations;
        cold_calls_not_activating += u64::from(between != before + 1);
        warm_calls_activating += u64::from(after != between);
    }
    let stats_after = actor.stats();
    subject.shutdown().await;
    drop(subject);

    let subject = Subject::start(Kind::Baseline).await?;
    activation_fixture(&subject, processes).await?;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..processes {
        let id = activation_id(i);
        first.push(time_events_after(&subject.registry, &id).await?);
        second.push(time_events_after(&subject.registry, &id).await?);
    }

    let (cold, warm) = (latency_side(cold), latency_side(warm));
    let cold_over_warm = ratio_of_medians(&cold, &warm);
    let n = count(processes);
    let rows = vec![
        Row::new(
            "activation_cold",
            format!("activation: events_after on a passivated process, {n} processes"),
            Unit::Micros,
            cold.clone(),
            latency_side(first),
        )
        .with_ratio(
            cold_over_warm,
            "cold/warm",
            "ratio = actor cold p50 / actor warm p50 (next row); baseline: no activation, its column is a plain \
             events_after",
        ),
        Row::new(
            "activation_warm",
            format!("events_after again on the same process (warm), {n} processes"),
            Unit::Micros,
            warm,
            latency_side(second),
        ),
    ];
    let report = ActivationReport {
        processes,
        idle_ms: u64::try_from(PASSIVATION_IDLE.as_millis()).unwrap_or(u64::MAX),
        stats_called,
        stats_passivated,
        stats_after,
        passivate_wait_seconds,
        cold_calls_not_activating,
        warm_calls_activating,
    };
    Ok((rows, report))
}

// ---------------------------------------------------------------------------
// RSS and CPU of this process
// ---------------------------------------------------------------------------

fn getconf(name: &str) -> Option<u64> {
    Command::new("getconf")
        .arg(name)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
}

fn page_size() -> u64 {
    getconf("PAGESIZE").unwrap_or(4096)
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

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = getconf("CLK_TCK").unwrap_or(100).max(1);
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Sleeps `period` and returns the CPU this process used meanwhile, as a
/// percentage of one core (`None` where `/proc/self/stat` is unreadable).
async fn idle_cpu_percent(period: Duration) -> Option<f64> {
    let before = cpu_time();
    let start = Instant::now();
    tokio::time::sleep(period).await;
    let used = cpu_time()?.checked_sub(before?)?;
    Some(100.0 * used.as_secs_f64() / start.elapsed().as_secs_f64())
}

/// Asks glibc's allocator to return its free heap memory to the OS
/// (`malloc_trim(0)`); false where that is not available. A diagnostic
/// only: RSS after it tells memory still in use from memory the allocator
/// merely keeps cached after it was freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() -> bool {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: `malloc_trim` takes no pointer, touches only the allocator's
    // own state under its locks, and is safe to call from any thread.
    unsafe { malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() -> bool {
    false
}

/// A thread that reads RSS every [`FLOOD_SAMPLE_EVERY`] and keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64), String>>,
}

impl RssSampler {
    fn start(page_size: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            loop {
                // One last sample after the stop request.
                let last = stopping.load(Ordering::Acquire);
                peak = peak.max(rss_bytes(page_size).map_err(|err| err.to_string())?);
                samples += 1;
                if last {
                    return Ok((peak, samples));
                }
                std::thread::sleep(FLOOD_SAMPLE_EVERY);
            }
        });
        Self { stop, thread }
    }

    /// Stops sampling: (peak RSS, samples taken).
    fn finish(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        Ok(self.thread.join().map_err(|_| "the RSS sampler panicked")??)
    }
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// Runs this binary with `args`; returns the JSON its stdout line starting
/// with `prefix` carries.
fn run_child<T: for<'de> Deserialize<'de>>(what: &str, args: &[String], prefix: &str) -> Result<T> {
    let exe = std::env::current_exe().map_err(|err| format!("locating this executable: {err}"))?;
    let output = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running the {what} ({}): {err}", exe.display()))?;
    if !output.status.success() {
        return Err(format!("the {what} failed: {}", output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .ok_or_else(|| format!("the {what} printed no report"))?;
    Ok(serde_json::from_str(line).map_err(|err| format!("the {what} report: {err}"))?)
}

/// Runs `op(i)` for every `i` in `0..n` from [`LOAD_TASKS`] concurrent tasks
/// (task `k` takes `k`, `k + LOAD_TASKS`, ...).
async fn for_each_concurrently<F, Fut>(n: u64, op: F) -> Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let tasks: Vec<_> = (0..LOAD_TASKS)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = task;
                while i < n {
                    op(i).await?;
                    i += LOAD_TASKS;
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

// ---------------------------------------------------------------------------
// Memory phase
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
struct MemoryReport {
    kind: Kind,
    processes: u64,
    /// RSS of the fresh registry, before the first registration.
    rss_before_bytes: u64,
    /// RSS after registering every process and settling; no call yet.
    rss_registered_bytes: u64,
    /// RSS after one call on every process (actor: and every actor
    /// passivated) and settling.
    rss_called_bytes: u64,
    /// Diagnostic: `rss_called_bytes` after `malloc_trim(0)` (glibc only),
    /// i.e. without the freed memory the allocator kept.
    rss_called_trimmed_bytes: Option<u64>,
    /// (`rss_registered_bytes` - `rss_before_bytes`) / `processes`.
    bytes_per_process_registered: f64,
    /// (`rss_called_bytes` - `rss_before_bytes`) / `processes`.
    bytes_per_process_called: f64,
    /// (`rss_called_trimmed_bytes` - `rss_before_bytes`) / `processes`.
    bytes_per_process_called_trimmed: Option<f64>,
    register_seconds: f64,
    call_seconds: f64,
    /// Actor only: from the last call to `live_actors == 0`.
    passivate_wait_seconds: Option<f64>,
    /// Actor only: the most live actors seen while calling (sampled).
    peak_live_actors: Option<u64>,
    /// CPU used while idle with every process registered (percent of a core).
    idle_cpu_percent_registered: Option<f64>,
    /// CPU used while idle after the calls, every actor passivated.
    idle_cpu_percent_called: Option<f64>,
    /// Actor only: stats when RSS was read after registering.
    stats_registered: Option<RegistryStats>,
    /// Actor only: stats when RSS was read after the calls.
    stats_called: Option<RegistryStats>,
}

fn memory_id(i: u64) -> String {
    format!("memory-{i:08}")
}

/// The child side: register `processes` processes on a fresh registry,
/// read RSS, call each process once (actor: wait for every actor to
/// passivate), read RSS again, and print a [`MemoryReport`] line.
fn memory_phase(kind: Kind, processes: u64) -> Result<()> {
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
                async move { register(&registry, &memory_id(i)).await }
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
                    let id = memory_id(i);
                    let events =
                        registry.events_after(&id, 0).await.map_err(|err| format!("events_after {id}: {err}"))?;
                    expect_len("events_after", events.len(), 0)
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

// ---------------------------------------------------------------------------
// Flood phase
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
struct FloodReport {
    kind: Kind,
    callers: u64,
    /// Actor only: the mailbox bound (calls in flight) of the flooded process.
    mailbox_capacity: Option<usize>,
    /// RSS before the callers were spawned.
    rss_before_bytes: u64,
    /// The highest RSS sampled while the callers ran.
    rss_peak_bytes: u64,
    /// RSS once every caller had its answer.
    rss_after_bytes: u64,
    /// Diagnostic: RSS afterwards and after `malloc_trim(0)` (glibc only):
    /// about what stays in use, mostly the appended log.
    rss_after_trimmed_bytes: Option<u64>,
    /// (`rss_peak_bytes` - `rss_before_bytes`) / `callers`.
    bytes_per_caller: f64,
    rss_samples: u64,
    /// Calls answered with success.
    completed: u64,
    /// Calls answered with an error.
    failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
    /// The sequence of the process's last event afterwards (= `completed`
    /// when every accepted append is in the log exactly once).
    last_sequence: u64,
    /// From releasing the callers to the last answer.
    seconds: f64,
    /// Actor only: stats afterwards.
    stats: Option<RegistryStats>,
}

/// The child side: `callers` tasks, released at once, each append one event
/// to one process, while a thread samples RSS; prints a [`FloodReport`] line.
fn flood_phase(kind: Kind, callers: u64) -> Result<()> {
    let page_size = page_size();
    let runtime = runtime()?;
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            // The default configuration: the default mailbox bound and policy.
            let subject = Subject::start(kind).await?;
            let registry = Arc::clone(&subject.registry);
            register(&registry, FLOOD_PROCESS).await?;
            // Activate the actor before measuring.
            registry.events_after(FLOOD_PROCESS, 0).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rss_before = rss_bytes(page_size)?;
            let sampler = RssSampler::start(page_size);
            let (go, gate) = watch::channel(false);
            let tasks: Vec<_> = (0..callers)
                .map(|n| {
                    let (registry, mut gate) = (Arc::clone(&registry), gate.clone());
                    tokio::spawn(async move {
                        gate.wait_for(|go| *go).await.map_err(|err| err.to_string())?;
                        registry.append_event(FLOOD_PROCESS, tick(n)).await.map(drop).map_err(|err| err.to_string())
                    })
                })
                .collect();
            drop(gate);
            let start = Instant::now();
            go.send(true).map_err(|_| "every flood caller is gone")?;
            let (mut completed, mut failed, mut first_error) = (0, 0, None);
            for task in tasks {
                match task.await? {
                    Ok(()) => completed += 1,
                    Err(err) => {
                        failed += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            let rss_after = rss_bytes(page_size)?;
            let (rss_peak, rss_samples) = sampler.finish()?;
            let rss_after_trimmed = if trim_heap() { Some(rss_bytes(page_size)?) } else { None };
            let last = registry.recent_events(FLOOD_PROCESS, 1).await?;
            Ok::<_, BoxError>(FloodReport {
                kind,
                callers,
                mailbox_capacity: subject.actor.as_ref().map(|_| MailboxConfig::default().capacity),
                rss_before_bytes: rss_before,
                rss_peak_bytes: rss_peak,
                rss_after_bytes: rss_after,
                rss_after_trimmed_bytes: rss_after_trimmed,
                bytes_per_caller: rss_peak.saturating_sub(rss_before) as f64 / callers as f64,
                rss_samples,
                completed,
                failed,
                first_error,
                last_sequence: last.last().map_or(0, |event| event.sequence),
                seconds,
                stats: subject.actor.as_ref().map(ActorProcessRegistry::stats),
            })
        })
        .await?
    })?;
    println!("{FLOOD_REPORT_PREFIX}{}", serde_json::to_string(&report)?);
    std::process::exit(0);
}

/// The parent side: runs [`flood_phase`] in a child process.
fn run_flood_child(kind: Kind, callers: u64) -> Result<FloodReport> {
    let args = [FLOOD_PHASE_FLAG.to_owned(), kind.name().to_owned(), "--callers".to_owned(), callers.to_string()];
    run_child(&format!("{} flood phase", kind.name()), &args, FLOOD_REPORT_PREFIX)
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
    let row = Row::new(figure.id(), figure.label(&sizes), unit, actor_samples.side(unit), baseline_samples.side(unit));
    Ok(match figure {
        Figure::AppendSequentialHandoff => {
            let ratio = row.ratio;
            row.with_ratio(ratio, "forwarded/baseline", "the ceiling of the row above")
        }
        _ => row,
    })
}

/// Runs every figure, each in a child process of its own (this binary
/// re-executed with [`FIGURE_PHASE_FLAG`]): a figure then never runs on an
/// allocator that earlier figures fragmented, which made the throughput
/// figures swing by a third from run to run when they shared one process.
fn run_figures(args: &Args) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (index, figure) in Figure::ALL.into_iter().enumerate() {
        eprintln!("[{}/{}] {}", index + 1, Figure::ALL.len(), figure.label(&Sizes::new(args)));
        let mut child_args = vec![FIGURE_PHASE_FLAG.to_owned(), figure.id().to_owned()];
        if args.quick {
            child_args.push("--quick".to_owned());
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
fn figure_phase(id: &str, sizes: Sizes, in_block_on: bool) -> Result<()> {
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

fn memory_rows(sizes: &Sizes) -> Result<(Vec<Row>, Vec<MemoryReport>)> {
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

fn flood_rows(sizes: &Sizes) -> Result<(Vec<Row>, Vec<FloodReport>)> {
    let callers = sizes.flood_callers;
    eprintln!("[flood] {} concurrent appends to one process, each registry in a child process", count(callers));
    let actor = run_flood_child(Kind::Actor, callers)?;
    let baseline = run_flood_child(Kind::Baseline, callers)?;
    let completed = format!(
        "completed: actor {}/{}, baseline {}/{}",
        count(actor.completed),
        count(callers),
        count(baseline.completed),
        count(callers)
    );
    let throughput =
        |report: &FloodReport| single_side(per_second(report.completed, Duration::from_secs_f64(report.seconds)));
    let rows = vec![
        Row::new(
            "flood_peak_rss",
            format!("flood: {} callers append to 1 process, peak RSS delta incl. the log", count(callers)),
            Unit::BytesPerCaller,
            single_side(actor.bytes_per_caller),
            single_side(baseline.bytes_per_caller),
        )
        .with_comment(completed),
        Row::new(
            "flood_throughput",
            format!("flood: {} callers append to 1 process, all answered", count(callers)),
            Unit::OpsPerSec,
            throughput(&actor),
            throughput(&baseline),
        ),
    ];
    Ok((rows, vec![actor, baseline]))
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// `1234567` as `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
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
            Unit::OpsPerSec | Unit::BytesPerProcess | Unit::BytesPerCaller => count(v.round() as u64),
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
        "ratio",
        "",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let default_ratio = row.ratio_of == ACTOR_OVER_BASELINE;
            let (ratio, verdict) = match row.ratio {
                Some(ratio) if default_ratio => {
                    let actor_wins = match row.better {
                        Better::Higher => ratio > 1.0,
                        Better::Lower => ratio < 1.0,
                    };
                    let verdict = if actor_wins { "actor better" } else { "baseline better" };
                    let verdict = match &row.comment {
                        Some(comment) => format!("{verdict}; {comment}"),
                        None => verdict.to_owned(),
                    };
                    (format!("{ratio:.2}x"), verdict)
                }
                Some(ratio) => (format!("{ratio:.2}x {}", row.ratio_of), row.comment.clone().unwrap_or_default()),
                None => ("-".to_owned(), row.comment.clone().unwrap_or_default()),
            };
            [
                row.label.clone(),
                row.unit.label().to_owned(),
                match row.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                }
                .to_owned(),
                format_value(row.actor.median, row.unit),
                format_value(row.baseline.median, row.unit),
                format_value(row.actor.p99, row.unit),
                format_value(row.baseline.p99, row.unit),
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
    activation: Option<&ActivationReport>,
    memory: &[MemoryReport],
    flood: &[FloodReport],
    started: SystemTime,
) -> serde_json::Value {
    let epoch_seconds = started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "schema_version": 2,
        "timestamp_unix_s": epoch_seconds,
        "timestamp_utc": utc_timestamp(epoch_seconds),
        "machine": {
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "cpu_model": cpu_model(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "build": { "profile": if cfg!(debug_assertions) { "debug" } else { "release" } },
        "runtime": { "flavor": "multi_thread", "worker_threads": 2, "driver": if args.in_block_on { "block_on" } else { "task" } },
        "quick": args.quick,
        "params": sizes,
        "phases": args.only.iter().map(|phase| phase.name()).collect::<Vec<_>>(),
        "ratio": "actor median / baseline median, unless a row's ratio_of says otherwise",
        "figures": rows,
        "activation_phase": activation,
        "memory_phase": memory,
        "flood_phase": flood,
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
    if let Some(kind) = args.flood_phase {
        return flood_phase(kind, sizes.flood_callers);
    }
    if let Some(id) = &args.figure_phase {
        return figure_phase(id, sizes, args.in_block_on);
    }
    let started = SystemTime::now();
    let clock = Instant::now();
    let phases: Vec<&str> = args.only.iter().map(|phase| phase.name()).collect();
    eprintln!(
        "loadgen: {} build, phases {}, {} rounds per figure, actor and baseline interleaved{}",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        phases.join(","),
        sizes.rounds,
        if args.in_block_on { ", figures driven from block_on" } else { "" }
    );
    let mut rows = Vec::new();
    let mut activation = None;
    let (figures, activate) = (args.only.contains(&Phase::Figures), args.only.contains(&Phase::Activation));
    if figures {
        rows.extend(run_figures(&args)?);
    }
    if activate {
        let runtime = runtime()?;
        let (activation_rows, report) = runtime.block_on(async move {
            tokio::spawn(async move {
                eprintln!("[activation] {} processes per registry", count(sizes.activation_processes));
                activation_phase(sizes).await
            })
            .await?
        })?;
        drop(runtime);
        rows.extend(activation_rows);
        activation = Some(report);
    }
    let mut memory_reports = Vec::new();
    if args.only.contains(&Phase::Memory) {
        let (memory_rows, reports) = memory_rows(&sizes)?;
        rows.extend(memory_rows);
        memory_reports = reports;
    }
    let mut flood_reports = Vec::new();
    if args.only.contains(&Phase::Flood) {
        let (flood_rows, reports) = flood_rows(&sizes)?;
        rows.extend(flood_rows);
        flood_reports = reports;
    }

    println!("{}", render_table(&rows));
    println!(
        "ratio = actor / baseline of the medians unless the row says otherwise; latencies: p50 and p99 over all \
         samples of {} rounds (activation: one pass over the processes); throughputs: median of {} rounds. \
         {} cores, {:.1} s.",
        sizes.rounds,
        sizes.rounds,
        std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        clock.elapsed().as_secs_f64()
    );
    if let Some(report) = &activation {
        println!(
            "activation actor: {} processes, idle {} ms; passivated all in {:.2} s; {}; cold calls without exactly \
             one activation: {}, warm calls that activated: {}",
            count(report.processes),
            report.idle_ms,
            report.passivate_wait_seconds,
            format_stats(&report.stats_after),
            report.cold_calls_not_activating,
            report.warm_calls_activating
        );
    }
    for report in &memory_reports {
        println!(
            "memory {}: RSS {} -> {} (registered) -> {} (called once{}) bytes for {} processes{}; registered in \
             {:.2} s, called in {:.2} s{}; idle CPU {} / {}{}",
            report.kind.name(),
            count(report.rss_before_bytes),
            count(report.rss_registered_bytes),
            count(report.rss_called_bytes),
            if report.kind == Kind::Actor { ", passivated" } else { "" },
            count(report.processes),
            report
                .rss_called_trimmed_bytes
                .zip(report.bytes_per_process_called_trimmed)
                .map(|(rss, per)| format!(
                    " (diagnostic: after malloc_trim(0) {} bytes, {} B/process)",
                    count(rss),
                    count(per.round() as u64)
                ))
                .unwrap_or_default(),
            report.register_seconds,
            report.call_seconds,
            report.passivate_wait_seconds.map(|s| format!(", all passivated {s:.2} s later")).unwrap_or_default(),
            format_percent(report.idle_cpu_percent_registered),
            format_percent(report.idle_cpu_percent_called),
            report
                .stats_called
                .as_ref()
                .map(|stats| format!(
                    "; peak live actors {}; {}",
                    count(report.peak_live_actors.unwrap_or(0)),
                    format_stats(stats)
                ))
                .unwrap_or_default()
        );
    }
    for report in &flood_reports {
        println!(
            "flood {}: {} callers{}; RSS {} -> peak {} -> {} bytes after ({} samples){}; {} completed, {} failed{}, \
             last sequence {}, {:.2} s{}",
            report.kind.name(),
            count(report.callers),
            report.mailbox_capacity.map(|c| format!(", mailbox bound {}", count(c as u64))).unwrap_or_default(),
            count(report.rss_before_bytes),
            count(report.rss_peak_bytes),
            count(report.rss_after_bytes),
            report.rss_samples,
            report
                .rss_after_trimmed_bytes
                .map(|rss| format!(" (diagnostic: after malloc_trim(0) {} bytes)", count(rss)))
                .unwrap_or_default(),
            count(report.completed),
            count(report.failed),
            report.first_error.as_ref().map(|err| format!(" (first: {err})")).unwrap_or_default(),
            count(report.last_sequence),
            report.seconds,
            report.stats.as_ref().map(|stats| format!("; {}", format_stats(stats))).unwrap_or_default()
        );
    }
    if let Some(path) = &args.json {
        let json = report_json(&args, &sizes, &rows, activation.as_ref(), &memory_reports, &flood_reports, started);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").map_err(|err| format!("writing {}: {err}", path.display()))?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    Ok(())
}

fn format_percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"))
}

fn format_stats(stats: &RegistryStats) -> String {
    format!(
        "stats: live_actors {}, activations {}, passivations {}",
        count(stats.live_actors),
        count(stats.activations),
        count(stats.passivations)
    )
}
