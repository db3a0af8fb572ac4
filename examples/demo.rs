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
//! 2. **Work**: 8 workers repeatedly take the crash-recovery worklist
//!    (`list_non_terminal`), claim a short lease (300 ms) on a few processes
//!    at a time, append progress and milestone events and complete them.
//!    A lease held by another worker is normal and skipped. Every append
//!    carries a replay key, so redoing a step after a takeover is idempotent.
//! 3. **Wait**: one task per session watches its granted processes without
//!    polling: it parks in `wait_event_after(.., "job.milestone", ..)` and
//!    `await_process`, and consumes wakes with `wake_events_after` + `ack_wake`.
//! 4. **Crash**: one worker is aborted while it holds leases. Nobody tells
//!    the others: once the leases expire, the next pass over the worklist
//!    claims them again with a higher fencing token (a *takeover*) and
//!    finishes the work, replaying the steps the crashed worker already did.
//! 5. **Report**: progress bars on stderr while it runs, a summary table on
//!    stdout at the end. The exit code is 0 only if every process ended
//!    terminal and every wake that was delivered was seen by its session.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use process_registry::{ActorProcessRegistry, RegistryConfig, RegistryStats};
use process_registry::{
    ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessHandleDescriptor, ProcessInput,
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessProvenance, ProcessRegistration, ProcessRegistry,
    ProcessStatus, ProcessValueSelector, ProcessWakeSpec, RegistryError, SessionScope,
};
use serde_json::{json, Map};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant as Deadline;

type BoxError = Box<dyn Error + Send + Sync>;

const PROCESSES: usize = 1_000;
const WORKERS: usize = 8;
const SESSIONS: usize = 10;
/// Short, so the crashed worker's leases expire quickly.
const LEASE_TTL_MS: u64 = 300;
/// How many leases a worker claims before working through them.
const BATCH: usize = 4;
/// Simulated work between two steps of a job.
const STEP_WORK: Duration = Duration::from_millis(1);
/// How long a worker rests after a pass over the worklist that found nothing to claim.
const IDLE_BACKOFF: Duration = Duration::from_millis(25);
/// The victim crashes after completing this many jobs...
const CRASH_AFTER_JOBS: u64 = 40;
/// ... in the middle of its next job, after this many steps (the "halfway" milestone is in).
const CRASH_AT_STEP: usize = 3;
/// The whole run must finish within this; otherwise it is reported as a failure.
const RUN_LIMIT: Duration = Duration::from_secs(60);

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
    registry: Arc<dyn ProcessRegistry>,
    counters: Counters,
    bars: Bars,
}

/// The demo's own bookkeeping (it does not rely on registry statistics).
#[derive(Default)]
struct Counters {
    lease_claims: AtomicU64,
    lease_takeovers: AtomicU64,
    leases_lost: AtomicU64,
    replays: AtomicU64,
    wakes_seen: AtomicU64,
    /// Distinct wake ids returned by appends, with their target session.
    /// A replayed milestone returns the same wake id again, so it is counted once.
    delivered: Mutex<HashMap<String, String>>,
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
    ProcessRegistration::new(process_id(index), ProcessInput::definition("demo.job", args))
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
// The job: what a worker appends
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

fn job_output(process_id: &str) -> ProcessAwaitOutput {
    ProcessAwaitOutput::success(json!({ "job": process_id, "steps": JOB_STEPS.len() }))
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

/// The crash plan of the victim worker: after `after_jobs` completed jobs,
/// in the middle of the next one, it tells `main` and hangs until `main` kills it.
struct CrashPlan {
    after_jobs: u64,
    holding_leases: oneshot::Sender<()>,
}

struct Worker {
    demo: Arc<Demo>,
    index: usize,
    name: String,
    /// Processes this worker holds a lease on right now.
    held: Arc<Mutex<BTreeSet<String>>>,
    jobs_done: u64,
    crash: Option<CrashPlan>,
}

impl Worker {
    fn new(demo: Arc<Demo>, index: usize, crash: Option<CrashPlan>) -> Self {
        Self { demo, index, name: format!("worker-{index}"), held: Arc::default(), jobs_done: 0, crash }
    }

    /// Passes over the worklist until it is empty.
    async fn run(mut self) -> Result<(), BoxError> {
        loop {
            let worklist = self.demo.registry.list_non_terminal().await?;
            if worklist.is_empty() {
                return Ok(());
            }
            // Start at a different place than the other workers, to spread the claims.
            let start = self.index * worklist.len() / WORKERS;
            let ids = worklist[start..].iter().chain(&worklist[..start]).map(|record| &record.id);
            let mut progressed = false;
            let mut batch = Vec::with_capacity(BATCH);
            for id in ids {
                if let Some(lease) = self.try_claim(id).await? {
                    batch.push(lease);
                }
                if batch.len() == BATCH {
                    progressed |= self.run_batch(&mut batch).await?;
                }
            }
            progressed |= self.run_batch(&mut batch).await?;
            if !progressed {
                // Everything left is leased by someone else: wait for leases to finish or expire.
                tokio::time::sleep(IDLE_BACKOFF).await;
            }
        }
    }

    /// Claims the lease on `id`; `None` when another worker holds it or the job is done.
    async fn try_claim(&self, id: &str) -> Result<Option<ProcessLease>, BoxError> {
        let lease = match self.demo.registry.claim_process_lease(id, &self.name, LEASE_TTL_MS).await {
            Ok(lease) => lease,
            Err(RegistryError::LeaseHeld { .. } | RegistryError::AlreadyTerminal { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        self.demo.counters.lease_claims.fetch_add(1, Ordering::Relaxed);
        locked(&self.held).insert(id.to_owned());
        if lease.fencing_token > 1 {
            self.note_takeover(&lease).await?;
        }
        Ok(Some(lease))
    }

    /// A lease with fencing token > 1 was held before by a worker that never released it.
    async fn note_takeover(&self, lease: &ProcessLease) -> Result<(), BoxError> {
        let counters = &self.demo.counters;
        let takeovers = counters.lease_takeovers.fetch_add(1, Ordering::Relaxed) + 1;
        let logged = self.demo.registry.recent_events(&lease.process_id, 1).await?;
        let last = logged.last().map_or(0, |event| event.sequence);
        self.demo.bars.note(&format!(
            "{} took over {} after lease expiry (fencing token {}, {last} event(s) already logged)",
            self.name, lease.process_id, lease.fencing_token
        ));
        self.demo.bars.completed.set_message(format!("takeovers: {takeovers}"));
        Ok(())
    }

    /// Works through the claimed leases; true when at least one job was completed.
    async fn run_batch(&mut self, batch: &mut Vec<ProcessLease>) -> Result<bool, BoxError> {
        if batch.is_empty() {
            return Ok(false);
        }
        let mut progressed = false;
        for lease in batch.drain(..) {
            progressed |= self.run_job(lease).await?;
        }
        Ok(progressed)
    }

    /// The victim's crash point: it tells `main` and hangs, holding its leases, until killed.
    async fn crash_point(&mut self) {
        let due = self.crash.as_ref().is_some_and(|plan| self.jobs_done >= plan.after_jobs);
        if let Some(plan) = self.crash.take_if(|_| due) {
            if plan.holding_leases.send(()).is_ok() {
                std::future::pending::<()>().await;
            }
            // Nobody is listening, so nobody will kill us: keep working.
        }
    }

    /// Runs one job under its lease: renew, append every step, complete, release.
    async fn run_job(&mut self, lease: ProcessLease) -> Result<bool, BoxError> {
        let demo = Arc::clone(&self.demo);
        let registry = &demo.registry;
        let id = lease.process_id.clone();
        let lease = match registry.renew_process_lease(&lease, LEASE_TTL_MS).await {
            Ok(renewed) => renewed,
            Err(RegistryError::LeaseMissingOrExpired { .. }) => {
                // We were too slow and someone else took over: leave the job to them.
                self.demo.counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                locked(&self.held).remove(&id);
                return Ok(false);
            }
            Err(err) => return Err(err.into()),
        };
        let logged = registry.recent_events(&id, 1).await?;
        let resume_after = logged.last().map_or(0, |event| event.sequence);
        for (done, step) in JOB_STEPS.into_iter().enumerate() {
            if done == CRASH_AT_STEP {
                self.crash_point().await;
            }
            self.append_step(&id, step, resume_after).await?;
            tokio::time::sleep(STEP_WORK).await;
        }
        registry.complete_process(&id, job_output(&id)).await?;
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await?;
        locked(&self.held).remove(&id);
        self.jobs_done += 1;
        self.demo.bars.completed.inc(1);
        Ok(true)
    }

    /// Appends one step; an event at or before `resume_after` is a replay of
    /// work done before a crash.
    async fn append_step(&self, id: &str, step: Step, resume_after: u64) -> Result<(), BoxError> {
        let result = self.demo.registry.append_event(id, step_request(id, step)).await?;
        let counters = &self.demo.counters;
        if result.event.sequence <= resume_after {
            counters.replays.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(delivery) = result.wake_delivery {
            locked(&counters.delivered).insert(delivery.wake_id, delivery.target_session_id);
        }
        Ok(())
    }
}

/// What the crash left behind.
struct CrashReport {
    victim: String,
    orphaned: BTreeSet<String>,
}

/// Runs every worker, aborts the victim (worker 0) mid-run and waits for the rest.
async fn run_workers(demo: &Arc<Demo>, deadline: Deadline) -> Result<(CrashReport, bool), BoxError> {
    let (holding_leases, crash_now) = oneshot::channel();
    let plan = CrashPlan { after_jobs: CRASH_AFTER_JOBS, holding_leases };
    let victim = Worker::new(Arc::clone(demo), 0, Some(plan));
    let victim_name = victim.name.clone();
    let victim_held = Arc::clone(&victim.held);
    let victim_task = tokio::spawn(victim.run());

    let mut workers = JoinSet::new();
    for index in 1..WORKERS {
        workers.spawn(Worker::new(Arc::clone(demo), index, None).run());
    }

    let orphaned = crash(demo, &victim_name, victim_task, crash_now, &victim_held).await?;
    let finished = join_all_before(&mut workers, deadline).await?;
    let report = CrashReport { victim: victim_name, orphaned };
    Ok((report, finished))
}

/// Waits for the victim's signal and aborts it: a crash while holding leases.
async fn crash(
    demo: &Demo,
    name: &str,
    task: JoinHandle<Result<(), BoxError>>,
    crash_now: oneshot::Receiver<()>,
    held: &Mutex<BTreeSet<String>>,
) -> Result<BTreeSet<String>, BoxError> {
    if crash_now.await.is_err() {
        // The victim finished (or failed) before its crash point.
        task.await??;
        return Ok(BTreeSet::new());
    }
    task.abort();
    // Wait until the task is really gone before reading what it held.
    if let Err(join_error) = task.await {
        if !join_error.is_cancelled() {
            return Err(join_error.into());
        }
    }
    let orphaned = locked(held).clone();
    let list = orphaned.iter().cloned().collect::<Vec<_>>().join(", ");
    demo.bars.note(&format!("{name} crashed holding {} lease(s): {list} (ttl {LEASE_TTL_MS} ms)", orphaned.len()));
    Ok(orphaned)
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
    replays: u64,
    wakes_delivered: usize,
    wakes_seen: u64,
    sessions_all_seen: usize,
    lease_claims: u64,
    orphaned_leases: usize,
    takeovers: u64,
    leases_lost: u64,
    finished_in_time: bool,
    elapsed: Duration,
}

/// Reads the final state back from the registry and merges the demo's counters.
async fn summarize(demo: &Demo, crash: &CrashReport, finished_in_time: bool) -> Result<Summary, BoxError> {
    let mut summary = Summary { finished_in_time, ..Summary::default() };
    for record in demo.registry.list_processes(&ProcessListFilter::any()).await? {
        match record.status {
            ProcessStatus::Running => summary.running += 1,
            ProcessStatus::Completed { .. } => summary.completed += 1,
            ProcessStatus::Failed { .. } => summary.failed += 1,
            ProcessStatus::Cancelled { .. } => summary.cancelled += 1,
        }
        let events = demo.registry.events_after(&record.id, 0).await?;
        summary.events_logged += events.len();
        summary.wake_events_logged += events.iter().filter(|event| event.is_wake()).count();
    }
    let counters = &demo.counters;
    let delivered = locked(&counters.delivered);
    let seen_by_session = locked(&counters.seen_by_session);
    let mut delivered_by_session: BTreeMap<&str, u64> = BTreeMap::new();
    for session in delivered.values() {
        *delivered_by_session.entry(session).or_default() += 1;
    }
    summary.sessions_all_seen =
        delivered_by_session.iter().filter(|(session, count)| seen_by_session.get(**session) == Some(*count)).count();
    summary.wakes_delivered = delivered.len();
    summary.wakes_seen = counters.wakes_seen.load(Ordering::Relaxed);
    summary.replays = counters.replays.load(Ordering::Relaxed);
    summary.lease_claims = counters.lease_claims.load(Ordering::Relaxed);
    summary.takeovers = counters.lease_takeovers.load(Ordering::Relaxed);
    summary.leases_lost = counters.leases_lost.load(Ordering::Relaxed);
    summary.orphaned_leases = crash.orphaned.len();
    Ok(summary)
}

fn print_summary(registry_name: &str, victim: &str, summary: &Summary, stats: &RegistryStats) {
    let row = |label: &str, value: String| println!("  {label:<36} {value:>10}");
    println!();
    println!("process-registry demo on {registry_name}");
    println!("  {:<36} {:>10}", "metric", "value");
    println!("  {:-<36} {:->10}", "", "");
    row("processes", (summary.running + summary.completed + summary.failed + summary.cancelled).to_string());
    row("  completed", summary.completed.to_string());
    row("  failed", summary.failed.to_string());
    row("  cancelled", summary.cancelled.to_string());
    row("  running", summary.running.to_string());
    row("events appended (in the logs)", summary.events_logged.to_string());
    row("  idempotent replays after takeover", summary.replays.to_string());
    row("wake events in the logs", summary.wake_events_logged.to_string());
    row("wakes delivered (distinct wake ids)", summary.wakes_delivered.to_string());
    row("wakes seen and acked by sessions", summary.wakes_seen.to_string());
    row("sessions that saw all their wakes", format!("{}/{SESSIONS}", summary.sessions_all_seen));
    row("lease claims", summary.lease_claims.to_string());
    row(&format!("leases orphaned by {victim}'s crash"), summary.orphaned_leases.to_string());
    row("lease takeovers (fencing token > 1)", summary.takeovers.to_string());
    row("leases lost to a takeover", summary.leases_lost.to_string());
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
    let registry: Arc<dyn ProcessRegistry> = registry_handle.clone();
    let demo = Arc::new(Demo { registry, counters: Counters::default(), bars: Bars::new()? });

    register_jobs(&demo).await?;
    demo.bars.note(&format!(
        "registered {PROCESSES} jobs on {registry_name} ({:?}), granted to {SESSIONS} sessions",
        demo.registry.durability_tier()
    ));
    let mut sessions = spawn_sessions(&demo);
    let (crash, workers_finished) = run_workers(&demo, deadline).await?;
    let sessions_finished = join_all_before(&mut sessions, deadline).await?;
    demo.bars.finish();

    let mut summary = summarize(&demo, &crash, workers_finished && sessions_finished).await?;
    summary.elapsed = started.elapsed();
    print_summary(registry_name, &crash.victim, &summary, &registry_handle.stats());
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
    if summary.wakes_seen != summary.wakes_delivered as u64 {
        failures.push(format!("{} wake(s) delivered but {} seen", summary.wakes_delivered, summary.wakes_seen));
    }
    if summary.sessions_all_seen != SESSIONS {
        failures.push(format!(
            "only {}/{SESSIONS} sessions finished watching having seen every wake delivered to them",
            summary.sessions_all_seen
        ));
    }
    failures
}
