//! # process-registry demo: 1,000 jobs, 8 workers, 10 sessions, one crash
//!
//! Run with `cargo run --release --example demo`, or on the durable store
//! with `cargo run --release --example demo -- --store PATH` (a new file:
//! the demo creates it, and `process-registry inspect PATH` shows it after).
//!
//! The demo drives one registry the way an agent runtime would:
//!
//! 1. **Register** 1,000 `demo.job` processes. Each declares two custom event
//!    types: `job.progress` (plain, payload checked against a JSON Schema)
//!    and `job.milestone` (a *wake* event: its `/note` becomes the wake
//!    input). Each process wakes one of 10 sessions and is granted to it.
//! 2. **Work**: 8 [`ProcessWorker`]s, each under its own owner id, share the
//!    registry. Each sweeps the crash-recovery worklist
//!    (`list_non_terminal`), claims short leases (300 ms, renewed every
//!    100 ms) for up to 4 jobs at a time and runs the `demo.job` handler
//!    for each: it appends the job's progress and milestone events through
//!    its [`ProcessContext`] (fenced by the lease) and returns the job's
//!    outcome, which the worker completes (fenced too) before releasing the
//!    lease. A lease held by another worker is normal and skipped. Every
//!    append carries a replay key, so a step is recorded once.
//! 3. **Wait**: one task per session watches its granted processes without
//!    polling: it parks in `wait_event_after(.., "job.milestone", ..)` and
//!    `await_process`, and consumes wakes with `wake_events_after` + `ack_wake`.
//! 4. **Crash**: one worker is dropped (a crash: nothing is released) while
//!    its handlers hold leases, one of them parked halfway through its job.
//!    Nobody tells the others: once the leases expire, the next sweep of
//!    another worker claims them again with a higher fencing token (a
//!    *takeover*) and finishes the work; the handler skips the steps the
//!    crashed worker already recorded (`ProcessContext::recorded`).
//! 5. **Report**: progress bars on stderr while it runs, a summary table on
//!    stdout at the end. The exit code is 0 only if the run finished in
//!    time, every process completed, every process the crash orphaned was
//!    finished by a takeover, and every wake in the logs was seen and acked
//!    by its session.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use process_registry::worker::{ProcessContext, ProcessWorker, WorkerConfig, WorkerStats};
use process_registry::{ActorProcessRegistry, FencedProcessRegistry, RegistryConfig, RegistryStats};
use process_registry::{
    ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessHandleDescriptor, ProcessInput,
    ProcessListFilter, ProcessProvenance, ProcessRegistration, ProcessStatus, ProcessValueSelector, ProcessWakeSpec,
    RegistryError, SessionScope,
};
use serde_json::{json, Map};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant as Deadline;

type BoxError = Box<dyn Error + Send + Sync>;

const PROCESSES: usize = 1_000;
const WORKERS: usize = 8;
const SESSIONS: usize = 10;
/// Short, so the crashed worker's leases expire quickly.
const LEASE_TTL: Duration = Duration::from_millis(300);
/// Jobs each worker runs at once (its concurrency).
const JOBS_PER_WORKER: usize = 4;
/// How often a worker sweeps the worklist: soon after the crashed
/// worker's leases expire, one of the others finds them.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// Simulated work between two steps of a job.
const STEP_WORK: Duration = Duration::from_millis(1);
/// The victim crashes after completing this many jobs...
const CRASH_AFTER_JOBS: u64 = 40;
/// ... in the middle of its next job, after this many steps (the "halfway" milestone is in).
const CRASH_AT_STEP: usize = 3;
/// The whole run must finish within this; otherwise it is reported as a failure.
const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long the surviving workers get to wind down at the end.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

const JOB: &str = "demo.job";
const PROGRESS: &str = "job.progress";
const MILESTONE: &str = "job.milestone";

// ---------------------------------------------------------------------------
// The registry under demo
// ---------------------------------------------------------------------------

/// The concrete registry the demo runs on: the actor registry on the
/// default in-memory store, or on SQLite with `--store PATH`.
type DemoRegistry = ActorProcessRegistry;

/// Where the demo keeps its state: `--store PATH`, else memory.
fn store_path() -> Result<Option<std::path::PathBuf>, BoxError> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => Ok(None),
        (Some("--store"), Some(path)) => {
            let path = std::path::PathBuf::from(path);
            if path.exists() {
                return Err(format!(
                    "{} exists: the demo registers its jobs afresh, give it a new path",
                    path.display()
                )
                .into());
            }
            Ok(Some(path))
        }
        _ => Err("usage: demo [--store PATH]".into()),
    }
}

/// Starts the registry.
async fn start_registry(store: Option<&std::path::Path>) -> Result<Arc<DemoRegistry>, BoxError> {
    Ok(Arc::new(match store {
        Some(path) => ActorProcessRegistry::open(path, RegistryConfig::default()).await?,
        None => ActorProcessRegistry::start(RegistryConfig::default()).await?,
    }))
}

/// Stops every actor of the registry.
async fn stop_registry(registry: Arc<DemoRegistry>) {
    registry.shutdown().await;
}

// ---------------------------------------------------------------------------
// Shared state: the registry, counters and progress bars
// ---------------------------------------------------------------------------

/// Everything the tasks share.
struct Demo {
    registry: Arc<dyn FencedProcessRegistry>,
    counters: Counters,
    bars: Bars,
}

/// The demo's own bookkeeping, beside the workers' [`WorkerStats`].
#[derive(Default)]
struct Counters {
    /// Handler runs that started under a fencing token > 1.
    takeovers: AtomicU64,
    /// Steps a handler found already recorded (by a crashed worker) and skipped.
    skipped_steps: AtomicU64,
    wakes_seen: AtomicU64,
    /// Wakes seen per session.
    seen_by_session: Mutex<BTreeMap<String, u64>>,
}

/// Progress bars drawn to stderr.
struct Bars {
    multi: MultiProgress,
    completed: ProgressBar,
    wakes: ProgressBar,
}

impl Bars {
    fn new() -> Result<Self, BoxError> {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>10} [{bar:40.cyan/blue}] {pos:>4}/{len:4} {msg}")?
            .progress_chars("=> ");
        let completed = multi.add(ProgressBar::new(PROCESSES as u64));
        completed.set_style(style.clone());
        completed.set_prefix("jobs done");
        let wakes = multi.add(ProgressBar::new((PROCESSES * MILESTONES.len()) as u64));
        wakes.set_style(style);
        wakes.set_prefix("wakes seen");
        Ok(Self { multi, completed, wakes })
    }

    /// Prints a line above the bars (also when stderr is not a terminal).
    fn note(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    fn finish(&self) {
        self.completed.finish();
        self.wakes.finish();
    }
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another task panicked while counting; the counts are still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

fn process_id(index: usize) -> String {
    format!("job-{index:04}")
}

fn session_scope(index: usize) -> SessionScope {
    SessionScope::new(format!("session-{:02}", index % SESSIONS))
}

/// `job.progress` (plain, schema-checked) and `job.milestone` (wakes its session).
fn job_event_types() -> Vec<ProcessEventType> {
    let progress_schema = json!({
        "type": "object",
        "properties": { "percent": { "type": "integer", "minimum": 0, "maximum": 100 } },
        "required": ["percent"]
    });
    let milestone_schema = json!({
        "type": "object",
        "properties": { "note": { "type": "string" } },
        "required": ["note"]
    });
    vec![
        ProcessEventType::new(PROGRESS, progress_schema),
        ProcessEventType::new(MILESTONE, milestone_schema)
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/note".into()))),
    ]
}

fn job_registration(index: usize) -> ProcessRegistration {
    let scope = session_scope(index);
    let mut args = Map::new();
    args.insert("index".into(), json!(index));
    args.insert("steps".into(), json!(JOB_STEPS.len()));
    ProcessRegistration::new(process_id(index), ProcessInput::definition(JOB, args))
        .with_extra_event_types(job_event_types())
        .with_process_provenance(ProcessProvenance::session(scope.clone(), "demo-host"))
        .with_wake_target(scope)
}

/// Registers every job and grants it to its session.
async fn register_jobs(demo: &Demo) -> Result<(), BoxError> {
    for index in 0..PROCESSES {
        let record = demo.registry.register_process(job_registration(index)).await?;
        let descriptor =
            ProcessHandleDescriptor { kind: Some("job".into()), label: Some(format!("demo job #{index}")) };
        demo.registry.grant_handle(&session_scope(index), &record.id, descriptor).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The job: what a worker's handler appends
// ---------------------------------------------------------------------------

/// One step of a job: a progress report or a milestone.
#[derive(Clone, Copy)]
enum Step {
    Progress(u8),
    Milestone(&'static str),
}

const MILESTONES: [&str; 2] = ["halfway", "finished"];
const JOB_STEPS: [Step; 6] = [
    Step::Progress(25),
    Step::Progress(50),
    Step::Milestone(MILESTONES[0]),
    Step::Progress(75),
    Step::Progress(100),
    Step::Milestone(MILESTONES[1]),
];

/// The append request of one step. Payloads and replay keys depend only on
/// the job and the step, so whoever redoes a step appends nothing new.
fn step_request(process_id: &str, step: Step) -> ProcessEventAppendRequest {
    match step {
        Step::Progress(percent) => ProcessEventAppendRequest::new(PROGRESS, json!({ "percent": percent }))
            .with_replay_key(format!("{process_id}:progress:{percent}")),
        Step::Milestone(name) => {
            ProcessEventAppendRequest::new(MILESTONE, json!({ "note": format!("{process_id} {name}") }))
                .with_replay_key(format!("{process_id}:milestone:{name}"))
        }
    }
}

/// A job's outcome names the worker and the fencing token it finished under.
fn job_output(process_id: &str, worker: &str, fencing_token: u64) -> ProcessAwaitOutput {
    ProcessAwaitOutput::success(json!({
        "job": process_id,
        "steps": JOB_STEPS.len(),
        "worker": worker,
        "fencing_token": fencing_token,
    }))
}

/// The fencing token a completed job's outcome names.
fn finished_under(status: &ProcessStatus) -> Option<u64> {
    match status {
        ProcessStatus::Completed { await_output: ProcessAwaitOutput::Success { value } } => {
            value.get("fencing_token")?.as_u64()
        }
        _ => None,
    }
}

/// The victim's crash plan: after `after_jobs` finished jobs, the next job
/// to reach its crash point tells `main` and parks there until `main` drops
/// the worker.
struct CrashPlan {
    after_jobs: u64,
    jobs_done: AtomicU64,
    signal: Mutex<Option<oneshot::Sender<()>>>,
    /// Jobs whose handler is running now: the leases the crash orphans.
    held: Mutex<BTreeSet<String>>,
}

impl CrashPlan {
    async fn crash_point(&self) {
        if self.jobs_done.load(Ordering::Relaxed) < self.after_jobs {
            return;
        }
        let signal = locked(&self.signal).take();
        if let Some(signal) = signal {
            if signal.send(()).is_ok() {
                std::future::pending::<()>().await;
            }
            // Nobody is listening, so nobody will crash us: keep working.
        }
    }
}

/// The `demo.job` handler: the job's steps, under `context`'s lease.
async fn run_job(
    demo: Arc<Demo>,
    worker: Arc<str>,
    crash: Option<Arc<CrashPlan>>,
    context: ProcessContext,
) -> Result<ProcessAwaitOutput, RegistryError> {
    let id = context.process_id().to_owned();
    if let Some(plan) = &crash {
        locked(&plan.held).insert(id.clone());
    }
    if context.fencing_token() > 1 {
        note_takeover(&demo, &worker, &context);
    }
    for (done, step) in JOB_STEPS.into_iter().enumerate() {
        if done == CRASH_AT_STEP {
            if let Some(plan) = &crash {
                plan.crash_point().await;
            }
        }
        let request = step_request(&id, step);
        if request.replay_key().is_some_and(|key| context.recorded(key).is_some()) {
            // Recorded by the worker that held the lease before: done, not redone.
            demo.counters.skipped_steps.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        context.append(request).await?;
        tokio::time::sleep(STEP_WORK).await;
    }
    if let Some(plan) = &crash {
        // Removed only here: a job whose handler the crash dropped stays held.
        locked(&plan.held).remove(&id);
        plan.jobs_done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(job_output(&id, &worker, context.fencing_token()))
}

/// A handler run under a fencing token > 1: an earlier owner of the lease
/// never released it.
fn note_takeover(demo: &Demo, worker: &str, context: &ProcessContext) {
    let takeovers = demo.counters.takeovers.fetch_add(1, Ordering::Relaxed) + 1;
    let recorded = JOB_STEPS
        .into_iter()
        .filter(|step| {
            let request = step_request(context.process_id(), *step);
            request.replay_key().is_some_and(|key| context.recorded(key).is_some())
        })
        .count();
    demo.bars.note(&format!(
        "{worker} took over {} after lease expiry (fencing token {}, {recorded} step(s) already recorded)",
        context.process_id(),
        context.fencing_token()
    ));
    demo.bars.completed.set_message(format!("takeovers: {takeovers}"));
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

fn worker_name(index: usize) -> String {
    format!("worker-{index}")
}

/// Starts worker `index` on the demo's registry.
fn start_worker(demo: &Arc<Demo>, index: usize, crash: Option<Arc<CrashPlan>>) -> Result<ProcessWorker, BoxError> {
    let name: Arc<str> = worker_name(index).into();
    let config = WorkerConfig {
        concurrency: JOBS_PER_WORKER,
        lease_ttl: LEASE_TTL,
        sweep_interval: SWEEP_INTERVAL,
        ..WorkerConfig::new(name.as_ref())
    };
    let handler_demo = Arc::clone(demo);
    let worker = ProcessWorker::builder(Arc::clone(&demo.registry), config)
        .handler(JOB, move |context| run_job(Arc::clone(&handler_demo), Arc::clone(&name), crash.clone(), context))
        .start()?;
    Ok(worker)
}

/// What the crash left behind.
struct CrashReport {
    victim: String,
    /// The victim's counters just before the crash (a completion in
    /// flight then is in the registry, not in these).
    victim_stats: WorkerStats,
    orphaned: BTreeSet<String>,
}

/// How the workers ran.
struct WorkReport {
    crash: Option<CrashReport>,
    /// The survivors' final counters.
    survivors: Vec<WorkerStats>,
    finished_in_time: bool,
}

/// Runs every worker, crashes the victim (worker 0) mid-run, waits until
/// every job is terminal, and shuts the survivors down.
async fn run_workers(demo: &Arc<Demo>, deadline: Deadline) -> Result<WorkReport, BoxError> {
    let (signal, crash_now) = oneshot::channel();
    let plan = Arc::new(CrashPlan {
        after_jobs: CRASH_AFTER_JOBS,
        jobs_done: AtomicU64::new(0),
        signal: Mutex::new(Some(signal)),
        held: Mutex::default(),
    });
    let victim = start_worker(demo, 0, Some(Arc::clone(&plan)))?;
    let mut survivors = (1..WORKERS).map(|index| start_worker(demo, index, None)).collect::<Result<Vec<_>, _>>()?;

    let mut all_done = tokio::spawn(all_terminal(Arc::clone(demo)));
    let mut crash = None;
    let mut joined_early = None;
    tokio::select! {
        signalled = crash_now => match signalled {
            Ok(()) => crash = Some(crash_victim(demo, victim, &plan)),
            Err(_) => survivors.push(victim),
        },
        // Every job finished before the victim reached its crash point.
        joined = &mut all_done => {
            joined_early = Some(joined);
            survivors.push(victim);
        }
    }
    let joined = match joined_early {
        Some(joined) => Some(joined),
        None => tokio::time::timeout_at(deadline, &mut all_done).await.ok(),
    };
    let finished_in_time = match joined {
        Some(joined) => {
            joined??;
            true
        }
        None => {
            all_done.abort();
            false
        }
    };
    let mut stats = Vec::with_capacity(survivors.len());
    for worker in survivors.drain(..) {
        stats.push(worker.shutdown(SHUTDOWN_DEADLINE).await);
    }
    Ok(WorkReport { crash, survivors: stats, finished_in_time })
}

/// Drops the victim while its handlers hold leases: a crash.
fn crash_victim(demo: &Demo, victim: ProcessWorker, plan: &CrashPlan) -> CrashReport {
    let name = victim.owner_id().to_owned();
    let victim_stats = victim.stats();
    drop(victim);
    let orphaned = locked(&plan.held).clone();
    let list = orphaned.iter().cloned().collect::<Vec<_>>().join(", ");
    demo.bars.note(&format!(
        "{name} crashed holding {} lease(s): {list} (ttl {} ms)",
        orphaned.len(),
        LEASE_TTL.as_millis()
    ));
    CrashReport { victim: name, victim_stats, orphaned }
}

/// Resolves once every job is terminal; counts them on the progress bar.
async fn all_terminal(demo: Arc<Demo>) -> Result<(), BoxError> {
    let mut waits = JoinSet::new();
    for index in 0..PROCESSES {
        let demo = Arc::clone(&demo);
        waits.spawn(async move { demo.registry.await_process(&process_id(index)).await });
    }
    while let Some(joined) = waits.join_next().await {
        joined??;
        demo.bars.completed.inc(1);
    }
    Ok(())
}

/// Joins every task of `set`; false when the deadline passed first (the rest are aborted).
async fn join_all_before(set: &mut JoinSet<Result<(), BoxError>>, deadline: Deadline) -> Result<bool, BoxError> {
    loop {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(None) => return Ok(true),
            Ok(Some(joined)) => joined??,
            Err(_elapsed) => {
                set.abort_all();
                return Ok(false);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

/// One task per session: watches every process granted to it.
fn spawn_sessions(demo: &Arc<Demo>) -> JoinSet<Result<(), BoxError>> {
    let mut sessions = JoinSet::new();
    for index in 0..SESSIONS {
        sessions.spawn(run_session(Arc::clone(demo), session_scope(index)));
    }
    sessions
}

async fn run_session(demo: Arc<Demo>, scope: SessionScope) -> Result<(), BoxError> {
    let grants = demo.registry.list_handle_grants(&scope).await?;
    let mut watchers = JoinSet::new();
    for (grant, _record) in grants {
        watchers.spawn(watch_process(Arc::clone(&demo), grant.process_id));
    }
    let mut seen = 0;
    while let Some(joined) = watchers.join_next().await {
        seen += joined??;
    }
    locked(&demo.counters.seen_by_session).insert(scope.session_id, seen);
    Ok(())
}

/// Parks until the next milestone or the end of the process; consumes the
/// wakes each time. Returns how many wakes it saw.
async fn watch_process(demo: Arc<Demo>, id: String) -> Result<u64, BoxError> {
    let registry = &demo.registry;
    let mut finished = registry.await_process(&id);
    let mut after = 0;
    let mut seen = 0;
    loop {
        tokio::select! {
            biased;
            outcome = &mut finished => {
                outcome?;
                // Milestones are appended before the terminal event: this drain is the last.
                return Ok(seen + consume_wakes(&demo, &id).await?);
            }
            milestone = registry.wait_event_after(&id, MILESTONE, after) => {
                after = milestone?.sequence;
                seen += consume_wakes(&demo, &id).await?;
            }
        }
    }
}

/// Reads the unacked wakes of `id` and acks them.
async fn consume_wakes(demo: &Demo, id: &str) -> Result<u64, BoxError> {
    let wakes = demo.registry.wake_events_after(id, 0).await?;
    for wake in &wakes {
        demo.registry.ack_wake(id, wake.sequence).await?;
    }
    let count = wakes.len() as u64;
    demo.counters.wakes_seen.fetch_add(count, Ordering::Relaxed);
    demo.bars.wakes.inc(count);
    Ok(count)
}

// ---------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Summary {
    running: usize,
    completed: usize,
    failed: usize,
    cancelled: usize,
    events_logged: usize,
    wake_events_logged: usize,
    skipped_steps: u64,
    wakes_seen: u64,
    sessions_all_seen: usize,
    workers: WorkerStats,
    orphaned_leases: usize,
    /// Orphaned jobs that did not complete under a later lease.
    orphans_not_taken_over: Vec<String>,
    takeovers: u64,
    finished_after_takeover: usize,
    finished_in_time: bool,
    elapsed: Duration,
}

/// The counters of every worker, added up.
fn add_stats(total: &mut WorkerStats, stats: &WorkerStats) {
    total.sweeps += stats.sweeps;
    total.claimed += stats.claimed;
    total.runs += stats.runs;
    total.completed += stats.completed;
    total.failed += stats.failed;
    total.handler_errors += stats.handler_errors;
    total.handler_panics += stats.handler_panics;
    total.retries += stats.retries;
    total.lost += stats.lost;
    total.abandoned += stats.abandoned;
    total.renewals += stats.renewals;
    total.running += stats.running;
    total.quarantined.extend(stats.quarantined.iter().cloned());
}

/// Reads the final state back from the registry and merges the demo's and
/// the workers' counters.
async fn summarize(demo: &Demo, work: &WorkReport) -> Result<Summary, BoxError> {
    let mut summary = Summary { finished_in_time: work.finished_in_time, ..Summary::default() };
    // Wake events in the final logs, per target session: what was delivered.
    let mut delivered_by_session: BTreeMap<String, u64> = BTreeMap::new();
    let mut finished_under_token = BTreeMap::new();
    for record in demo.registry.list_processes(&ProcessListFilter::any()).await? {
        match record.status {
            ProcessStatus::Running => summary.running += 1,
            ProcessStatus::Completed { .. } => summary.completed += 1,
            ProcessStatus::Failed { .. } => summary.failed += 1,
            ProcessStatus::Cancelled { .. } => summary.cancelled += 1,
        }
        let token = finished_under(&record.status);
        summary.finished_after_takeover += usize::from(token.is_some_and(|token| token > 1));
        finished_under_token.insert(record.id.clone(), token);
        let events = demo.registry.events_after(&record.id, 0).await?;
        summary.events_logged += events.len();
        let wakes = events.iter().filter(|event| event.is_wake()).count();
        summary.wake_events_logged += wakes;
        if let Some(target) = &record.wake_target {
            *delivered_by_session.entry(target.session_id.clone()).or_default() += wakes as u64;
        }
    }
    let counters = &demo.counters;
    let seen_by_session = locked(&counters.seen_by_session);
    summary.sessions_all_seen =
        delivered_by_session.iter().filter(|(session, count)| seen_by_session.get(*session) == Some(*count)).count();
    summary.wakes_seen = counters.wakes_seen.load(Ordering::Relaxed);
    summary.skipped_steps = counters.skipped_steps.load(Ordering::Relaxed);
    summary.takeovers = counters.takeovers.load(Ordering::Relaxed);
    for stats in work.crash.iter().map(|crash| &crash.victim_stats).chain(&work.survivors) {
        add_stats(&mut summary.workers, stats);
    }
    if let Some(crash) = &work.crash {
        summary.orphaned_leases = crash.orphaned.len();
        summary.orphans_not_taken_over = crash
            .orphaned
            .iter()
            .filter(|id| finished_under_token.get(*id).copied().flatten().is_none_or(|token| token <= 1))
            .cloned()
            .collect();
    }
    Ok(summary)
}

fn print_summary(registry_name: &str, victim: &str, summary: &Summary, stats: &RegistryStats) {
    let row = |label: &str, value: String| println!("  {label:<40} {value:>10}");
    let workers = &summary.workers;
    println!();
    println!("process-registry demo on {registry_name}");
    println!("  {:<40} {:>10}", "metric", "value");
    println!("  {:-<40} {:->10}", "", "");
    row("processes", (summary.running + summary.completed + summary.failed + summary.cancelled).to_string());
    row("  completed", summary.completed.to_string());
    row("  failed", summary.failed.to_string());
    row("  cancelled", summary.cancelled.to_string());
    row("  running", summary.running.to_string());
    row("events appended (in the logs)", summary.events_logged.to_string());
    row("  recorded steps skipped after takeover", summary.skipped_steps.to_string());
    row("wake events in the logs", summary.wake_events_logged.to_string());
    row("wakes seen and acked by sessions", summary.wakes_seen.to_string());
    row("sessions that saw all their wakes", format!("{}/{SESSIONS}", summary.sessions_all_seen));
    row("lease claims (all workers)", workers.claimed.to_string());
    row("handler runs", workers.runs.to_string());
    row("completions counted by workers", workers.completed.to_string());
    row("lease renewals", workers.renewals.to_string());
    row(&format!("leases orphaned by {victim}'s crash"), summary.orphaned_leases.to_string());
    row("lease takeovers (fencing token > 1)", summary.takeovers.to_string());
    row("  jobs finished under a takeover", summary.finished_after_takeover.to_string());
    row("leases lost to a takeover", workers.lost.to_string());
    row("process actors started (activations)", stats.activations.to_string());
    row("  live at the end", stats.live_actors.to_string());
    row("  restarted after a panic", stats.restarts.to_string());
    row("callers still parked", stats.parked_waiters.to_string());
    row("elapsed", format!("{:.2?}", summary.elapsed));
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let deadline = Deadline::now() + RUN_LIMIT;
    let store = store_path()?;
    let registry_handle = start_registry(store.as_deref()).await?;
    let registry_name = std::any::type_name::<DemoRegistry>().rsplit("::").next().unwrap_or("registry");
    let registry: Arc<dyn FencedProcessRegistry> = registry_handle.clone();
    let demo = Arc::new(Demo { registry, counters: Counters::default(), bars: Bars::new()? });

    register_jobs(&demo).await?;
    demo.bars.note(&format!(
        "registered {PROCESSES} jobs on {registry_name} ({:?}), granted to {SESSIONS} sessions",
        demo.registry.durability_tier()
    ));
    let mut sessions = spawn_sessions(&demo);
    let mut work = run_workers(&demo, deadline).await?;
    let sessions_finished = join_all_before(&mut sessions, deadline).await?;
    work.finished_in_time &= sessions_finished;
    demo.bars.finish();

    let mut summary = summarize(&demo, &work).await?;
    summary.elapsed = started.elapsed();
    let victim = work.crash.as_ref().map_or_else(|| worker_name(0), |crash| crash.victim.clone());
    print_summary(registry_name, &victim, &summary, &registry_handle.stats());
    stop_registry(registry_handle).await;

    let failures = failures(&summary);
    if !failures.is_empty() {
        eprintln!("demo FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
    Ok(())
}

/// Why the run does not count as a success (empty when it does).
fn failures(summary: &Summary) -> Vec<String> {
    let mut failures = Vec::new();
    if !summary.finished_in_time {
        failures.push(format!("the run did not finish within {RUN_LIMIT:?}"));
    }
    if summary.running > 0 {
        failures.push(format!("{} process(es) never reached a terminal status", summary.running));
    }
    if summary.failed + summary.cancelled > 0 {
        failures.push(format!(
            "{} process(es) failed and {} were cancelled; every job should complete",
            summary.failed, summary.cancelled
        ));
    }
    if !summary.orphans_not_taken_over.is_empty() {
        failures.push(format!(
            "orphaned by the crash but not finished under a later lease: {}",
            summary.orphans_not_taken_over.join(", ")
        ));
    }
    if summary.wakes_seen != summary.wake_events_logged as u64 {
        failures.push(format!("{} wake(s) in the logs but {} seen", summary.wake_events_logged, summary.wakes_seen));
    }
    if summary.sessions_all_seen != SESSIONS {
        failures.push(format!(
            "only {}/{SESSIONS} sessions finished watching having seen every wake delivered to them",
            summary.sessions_all_seen
        ));
    }
    failures
}
