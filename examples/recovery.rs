//! # process-registry recovery: a worker killed with SIGKILL, a new one finishes
//!
//! Run with `cargo run --release --example recovery` (in a fresh temporary
//! directory, removed at the end), or `-- --path DIR` to keep the files in
//! `DIR` (`registry.sqlite`, `ledger.jsonl`, `child.stderr`; `DIR` must not
//! hold them yet). `--processes N` and `--steps N` change the size (default
//! 200 processes of 5 steps).
//!
//! What it shows: a [`ProcessWorker`] on a durable SQLite file is killed
//! with SIGKILL in the middle of its work, and a new worker on the
//! reopened file finishes every process exactly once, without doing again
//! a step the killed one had recorded.
//!
//! 1. The parent registers the processes in `registry.sqlite` and closes it.
//! 2. **Generation 1**: the parent re-executes this example with `--child`.
//!    The child opens the file and runs a worker (owner `recovery-gen-1`).
//!    Its handler does each process's steps in order. A step is: some work,
//!    then its *side effect* (a line appended to `ledger.jsonl`, outside
//!    the registry, naming the generation, the process, the step and the
//!    fencing token), a short pause (as if waiting for the side effect's
//!    answer), then its record: a fenced append of a `step` event
//!    with the replay key `step:{n}`, whose payload names the generation and
//!    the fencing token. A step whose key [`ProcessContext::recorded`]
//!    reports (recorded by an earlier run) is skipped. The child reports
//!    each recorded step and each finished process on its stdout.
//! 3. **The kill**: once a quarter of the processes are done, the parent
//!    kills the child with SIGKILL, wherever its handlers are: some between
//!    a step's side effect and its append, some inside a SQLite commit.
//! 4. **Generation 2**: the parent reopens the file (a SIGKILL leaves no
//!    lock behind) and runs a new worker there. It runs under a *new* owner
//!    id, `recovery-gen-2`, as a replacement on another machine would: the
//!    leases the killed worker held stay its own until they expire, so the
//!    lease ttl is short (2 s, renewed every 667 ms while a worker lives)
//!    and the takeover comes about 2 s after the kill; processes the killed
//!    worker never claimed are claimed at once. (A worker restarted under
//!    its old owner id would instead reclaim its leases at once; the test
//!    `tests/worker_crash.rs` takes that path.) Every claim gets the next
//!    fencing token, so a process generation 1 held is finished under
//!    token 2.
//! 5. **The checks**, from the file and the ledger: every process completed
//!    with one terminal event; every step is recorded once, and its
//!    ledger line (same generation and token) is there; no step recorded
//!    by generation 1 has a generation-2 ledger line (it was not done
//!    again); a step done twice is only ever the one in flight at the kill
//!    (its side effect done, its append not committed: allowed, reported);
//!    a process's later claims have higher fencing tokens. The exit code is
//!    0 only if every check passes.
//!
//! Nothing here asserts a duration: timing only paces the work and picks
//! the kill moment; every wait is bounded (60 s) and a bound that passes is
//! a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use process_registry::worker::{ProcessContext, ProcessWorker, WorkerConfig};
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessInput, ProcessRecord, ProcessRegistration, ProcessRegistry, ProcessStatus, RegistryConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;

type BoxError = Box<dyn Error + Send + Sync>;

const DEFAULT_PROCESSES: usize = 200;
const DEFAULT_STEPS: u64 = 5;
const JOB: &str = "recovery.job";
const STEP: &str = "step";
const REGISTRY_FILE: &str = "registry.sqlite";
const LEDGER_FILE: &str = "ledger.jsonl";
const CHILD_STDERR: &str = "child.stderr";
/// Short, so generation 2 takes the killed worker's leases over soon.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Generation 2 looks for expired leases this often.
const SWEEP_INTERVAL: Duration = Duration::from_millis(200);
/// Handlers running at once in each worker.
const CONCURRENCY: usize = 16;
/// The work of one step, before its side effect: 2 to 9 ms, varying by
/// process and step so the handlers do not run in lockstep.
fn step_work(process: &str, step: u64) -> Duration {
    let hash = process
        .bytes()
        .fold(step.wrapping_mul(0x9E37_79B9), |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3));
    Duration::from_millis(2 + (hash >> 32) % 8)
}
/// Between a step's side effect and its append (waiting for the side
/// effect's answer, say): a kill that falls here leaves a side effect
/// without its record, and the step is done again.
const STEP_SETTLE: Duration = Duration::from_millis(4);
/// The kill comes once this share of the processes is done (1/4).
const KILL_AFTER_DONE_DIVISOR: usize = 4;
/// A bound on every wait; passing it is a failure.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

struct Args {
    child: bool,
    path: Option<PathBuf>,
    processes: usize,
    steps: u64,
}

fn parse_args() -> Result<Args, BoxError> {
    let usage = "usage: recovery [--path DIR] [--processes N] [--steps N]";
    let mut args = Args { child: false, path: None, processes: DEFAULT_PROCESSES, steps: DEFAULT_STEPS };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        match flag.as_str() {
            "--child" => args.child = true,
            "--path" => args.path = Some(given.next().ok_or(usage)?.into()),
            "--processes" => args.processes = given.next().ok_or(usage)?.parse()?,
            "--steps" => args.steps = given.next().ok_or(usage)?.parse()?,
            _ => return Err(usage.into()),
        }
    }
    if args.processes == 0 || args.steps == 0 {
        return Err(format!("{usage}: N must be at least 1").into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// The job, as both generations run it
// ---------------------------------------------------------------------------

fn process_id(index: usize) -> String {
    format!("p-{index:04}")
}

fn step_key(step: u64) -> String {
    format!("step:{step}")
}

fn registration(index: usize, steps: u64) -> ProcessRegistration {
    let mut args = serde_json::Map::new();
    args.insert("steps".to_owned(), json!(steps));
    let schema = json!({
        "type": "object",
        "properties": {
            "step": { "type": "integer" },
            "generation": { "type": "integer" },
            "fencing_token": { "type": "integer" }
        },
        "required": ["step", "generation", "fencing_token"]
    });
    ProcessRegistration::new(process_id(index), ProcessInput::definition(JOB, args))
        .with_extra_event_types([ProcessEventType::new(STEP, schema)])
}

/// One side effect, as a line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerLine {
    generation: u64,
    process: String,
    step: u64,
    token: u64,
}

/// The ledger: a file outside the registry that every step's side effect
/// appends one line to. Each line is one `write` on a file opened for
/// appending, so concurrent handlers never interleave, and a SIGKILL
/// leaves whole lines (it cannot stop a `write` to a regular file halfway;
/// the page cache outlives the process).
struct Ledger {
    file: File,
}

impl Ledger {
    fn open(path: &Path) -> Result<Self, BoxError> {
        Ok(Self { file: OpenOptions::new().create(true).append(true).open(path)? })
    }

    fn record(&self, line: &LedgerLine) -> Result<(), BoxError> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        (&self.file).write_all(text.as_bytes())?;
        (&self.file).flush()?;
        Ok(())
    }
}

/// Called after each recorded step, with the process and the step (progress).
type OnStep = Box<dyn Fn(&str, u64) + Send + Sync>;

/// Who did a step, or finished a process: (generation, fencing token).
type Claim = (u64, u64);

/// What one generation's handler needs.
struct Job {
    generation: u64,
    steps: u64,
    ledger: Ledger,
    on_step: OnStep,
}

/// The handler: every step not recorded yet, in order: work, side effect,
/// a pause, record.
async fn run_job(job: Arc<Job>, context: ProcessContext) -> Result<ProcessAwaitOutput, BoxError> {
    let (process, token) = (context.process_id().to_owned(), context.fencing_token());
    for step in 1..=job.steps {
        let key = step_key(step);
        if context.recorded(&key).is_some() {
            continue;
        }
        tokio::time::sleep(step_work(&process, step)).await;
        job.ledger.record(&LedgerLine { generation: job.generation, process: process.clone(), step, token })?;
        tokio::time::sleep(STEP_SETTLE).await;
        let payload = json!({ "step": step, "generation": job.generation, "fencing_token": token });
        context.append(ProcessEventAppendRequest::new(STEP, payload).with_replay_key(key)).await?;
        (job.on_step)(&process, step);
    }
    Ok(ProcessAwaitOutput::success(json!({ "generation": job.generation, "fencing_token": token })))
}

fn start_worker(
    registry: &ActorProcessRegistry,
    owner: &str,
    job: Job,
) -> Result<ProcessWorker, process_registry::RegistryError> {
    let registry: Arc<dyn FencedProcessRegistry> = Arc::new(registry.clone());
    let config = WorkerConfig {
        concurrency: CONCURRENCY,
        lease_ttl: LEASE_TTL,
        sweep_interval: SWEEP_INTERVAL,
        ..WorkerConfig::new(owner)
    };
    let job = Arc::new(job);
    ProcessWorker::builder(registry, config).handler(JOB, move |context| run_job(Arc::clone(&job), context)).start()
}

fn owner(generation: u64) -> String {
    format!("recovery-gen-{generation}")
}

// ---------------------------------------------------------------------------
// The child: generation 1, until SIGKILL
// ---------------------------------------------------------------------------

/// Runs generation 1 on `dir`, reporting on stdout, until it is killed.
async fn run_child(dir: &Path, processes: usize, steps: u64) -> Result<(), BoxError> {
    let registry = ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default()).await?;
    let job = Job {
        generation: 1,
        steps,
        ledger: Ledger::open(&dir.join(LEDGER_FILE))?,
        // One `println!` is one line on the pipe (stdout is line-buffered).
        on_step: Box::new(|process, step| println!("step {process} {step}")),
    };
    let _worker = start_worker(&registry, &owner(1), job)?;
    for index in 0..processes {
        let registry = registry.clone();
        tokio::spawn(async move {
            if registry.await_process(&process_id(index)).await.is_ok() {
                println!("done {}", process_id(index));
            }
        });
    }
    // Not an assertion: a bound on a child the parent failed to kill.
    tokio::time::sleep(WAIT_LIMIT).await;
    Err("nobody killed this child".into())
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// Progress bars on stderr.
struct Bars {
    multi: MultiProgress,
    done: ProgressBar,
    steps: ProgressBar,
}

impl Bars {
    fn new(processes: usize, steps: u64) -> Result<Self, BoxError> {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{prefix:>15} [{bar:40.cyan/blue}] {pos:>4}/{len:4} {msg}")?
            .progress_chars("=> ");
        let done = multi.add(ProgressBar::new(processes as u64));
        done.set_style(style.clone());
        done.set_prefix("processes done");
        let steps = multi.add(ProgressBar::new(processes as u64 * steps));
        steps.set_style(style);
        steps.set_prefix("steps recorded");
        Ok(Self { multi, done, steps })
    }

    fn note(&self, line: &str) {
        self.multi.suspend(|| eprintln!("{line}"));
    }

    fn message(&self, message: &str) {
        self.done.set_message(message.to_owned());
    }
}

/// What the child reported before the kill.
#[derive(Default)]
struct ChildReport {
    done: usize,
    steps: u64,
}

/// Runs generation 1 as a child and kills it with SIGKILL once
/// `kill_after` processes are done.
fn run_and_kill_child(dir: &Path, args: &Args, bars: &Bars) -> Result<ChildReport, BoxError> {
    let stderr_path = dir.join(CHILD_STDERR);
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg("--path")
        .arg(dir)
        .args(["--processes", &args.processes.to_string(), "--steps", &args.steps.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path)?)
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        // A last line without its newline was cut by the kill: dropped.
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(read) if read > 0) && line.ends_with('\n') {
            if lines.send(line.trim_end().to_owned()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    bars.note(&format!("generation 1: child {pid} runs {} on {}", owner(1), dir.join(REGISTRY_FILE).display()));
    bars.message("generation 1");
    let kill_after = args.processes.div_ceil(KILL_AFTER_DONE_DIVISOR);
    let mut report = ChildReport::default();
    let started = Instant::now();
    while report.done < kill_after {
        let left = WAIT_LIMIT.saturating_sub(started.elapsed());
        match received.recv_timeout(left) {
            Ok(line) if line.starts_with("step ") => {
                report.steps += 1;
                bars.steps.inc(1);
            }
            Ok(line) if line.starts_with("done ") => {
                report.done += 1;
                bars.done.inc(1);
            }
            Ok(_) => {}
            Err(error) => {
                let _ = child.kill();
                let status = child.wait();
                return Err(format!(
                    "generation 1 stopped reporting ({error}, {status:?}) after {} done; its stderr:\n{}",
                    report.done,
                    child_stderr()
                )
                .into());
            }
        }
    }
    // `Child::kill` is SIGKILL on Unix.
    child.kill()?;
    let status = child.wait()?;
    if status.code().is_some() {
        return Err(format!("the child exited on its own ({status}); its stderr:\n{}", child_stderr()).into());
    }
    let _ = reader.join();
    // Lines the child wrote before the kill that the loop had not read yet.
    for line in received.try_iter() {
        if line.starts_with("step ") {
            report.steps += 1;
        } else if line.starts_with("done ") {
            report.done += 1;
        }
    }
    bars.note(&format!(
        "killed child {pid} with SIGKILL ({status}) after it reported {} processes done and {} steps recorded",
        report.done, report.steps
    ));
    Ok(report)
}

/// Registers the processes in a new file and closes it.
async fn register(dir: &Path, processes: usize, steps: u64) -> Result<(), BoxError> {
    let registry = ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default()).await?;
    let mut registrations = JoinSet::new();
    for index in 0..processes {
        let registry = registry.clone();
        registrations.spawn(async move { registry.register_process(registration(index, steps)).await });
    }
    while let Some(joined) = registrations.join_next().await {
        joined??;
    }
    registry.shutdown().await;
    Ok(())
}

/// Generation 2: reopens the file and runs a new worker until every
/// process is terminal; returns the open registry for the checks.
async fn run_generation_2(dir: &Path, args: &Args, bars: &Arc<Bars>) -> Result<ActorProcessRegistry, BoxError> {
    let registry = ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default()).await?;
    // Start the bars from what the file holds, not from what the child said.
    let mut terminal = 0;
    let mut recorded = 0;
    for index in 0..args.processes {
        let id = process_id(index);
        let record = get_record(&registry, &id).await?;
        terminal += usize::from(record.status.is_terminal());
        recorded += registry.events_after(&id, 0).await?.iter().filter(|event| event.event_type == STEP).count();
    }
    bars.done.set_position(terminal as u64);
    bars.steps.set_position(recorded as u64);
    bars.note(&format!("reopened the file: {terminal} processes terminal, {recorded} steps recorded"));
    bars.note(&format!(
        "generation 2: a new owner id, {}: it claims the killed worker's leases once they expire (ttl {} ms) \
         and the rest at once",
        owner(2),
        LEASE_TTL.as_millis()
    ));
    bars.message("generation 2");
    let on_step: OnStep = {
        let bars = Arc::clone(bars);
        Box::new(move |_, _| bars.steps.inc(1))
    };
    let job = Job { generation: 2, steps: args.steps, ledger: Ledger::open(&dir.join(LEDGER_FILE))?, on_step };
    let worker = start_worker(&registry, &owner(2), job)?;
    let mut waits = JoinSet::new();
    for index in 0..args.processes {
        let registry = registry.clone();
        waits.spawn(async move { registry.await_process(&process_id(index)).await });
    }
    let finished = tokio::time::timeout(WAIT_LIMIT, async {
        let mut seen = 0;
        while let Some(joined) = waits.join_next().await {
            joined??;
            seen += 1;
            if seen > terminal {
                bars.done.inc(1);
            }
        }
        Ok::<_, BoxError>(())
    })
    .await;
    let stats = worker.shutdown(Duration::from_secs(5)).await;
    bars.note(&format!(
        "generation 2 worker: {} claimed, {} completed, {} failed, {} lost",
        stats.claimed, stats.completed, stats.failed, stats.lost
    ));
    match finished {
        Ok(result) => result?,
        Err(_elapsed) => return Err(format!("generation 2 did not finish within {WAIT_LIMIT:?}").into()),
    }
    Ok(registry)
}

/// The record of `id`, or an error naming it.
async fn get_record(registry: &ActorProcessRegistry, id: &str) -> Result<ProcessRecord, BoxError> {
    registry.get_process(id).await.ok_or_else(|| format!("process {id} is not in the file").into())
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// What the file and the ledger say, and what is wrong.
#[derive(Default)]
struct Verdict {
    completed: usize,
    /// Steps whose event generation 1 recorded.
    recorded_by_1: usize,
    recorded_by_2: usize,
    /// Steps recorded by generation 1 that generation 2 did again (must be 0).
    done_again: usize,
    /// Steps whose side effect generation 1 did but whose event generation 2
    /// recorded: the kill fell between the two.
    redone: usize,
    ledger_lines: usize,
    /// (who did the first step, who finished) -> processes.
    histogram: BTreeMap<(Claim, Claim), usize>,
    failures: Vec<String>,
}

fn read_ledger(path: &Path) -> Result<Vec<LedgerLine>, BoxError> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let parsed =
            serde_json::from_str(line).map_err(|error| format!("ledger line {}: {error}: {line}", number + 1))?;
        lines.push(parsed);
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the ledger ends in a partial line".into());
    }
    Ok(lines)
}

fn payload_u64(payload: &serde_json::Value, field: &str) -> Option<u64> {
    payload.get(field)?.as_u64()
}

async fn check(registry: &ActorProcessRegistry, dir: &Path, args: &Args) -> Result<Verdict, BoxError> {
    let ledger = read_ledger(&dir.join(LEDGER_FILE))?;
    let mut verdict = Verdict { ledger_lines: ledger.len(), ..Verdict::default() };
    // (process, step) -> its ledger lines.
    let mut effects: BTreeMap<(&str, u64), Vec<&LedgerLine>> = BTreeMap::new();
    for line in &ledger {
        effects.entry((line.process.as_str(), line.step)).or_default().push(line);
    }
    let mut failures = Vec::new();
    for ((process, step), lines) in &effects {
        let tokens: BTreeSet<u64> = lines.iter().map(|line| line.token).collect();
        if tokens.len() != lines.len() {
            failures.push(format!("{process} step {step}: done twice under one lease: {lines:?}"));
        }
    }
    for index in 0..args.processes {
        let id = process_id(index);
        let record = get_record(registry, &id).await?;
        let events = registry.events_after(&id, 0).await?;
        let terminal = events.iter().filter(|event| event.is_terminal()).count();
        if terminal != 1 {
            failures.push(format!("{id}: {terminal} terminal events"));
        }
        let final_claim = match &record.status {
            ProcessStatus::Completed { await_output: ProcessAwaitOutput::Success { value } } => {
                payload_u64(value, "generation").zip(payload_u64(value, "fencing_token"))
            }
            _ => None,
        };
        let Some((final_generation, final_token)) = final_claim else {
            failures.push(format!("{id}: did not complete with the handler's outcome: {:?}", record.status));
            continue;
        };
        verdict.completed += 1;
        let mut recorded_by_1 = 0;
        let mut redone = Vec::new();
        for step in 1..=args.steps {
            let key = step_key(step);
            let recorded: Vec<_> =
                events.iter().filter(|event| event.invocation.replay_key.as_deref() == Some(key.as_str())).collect();
            let [event] = recorded.as_slice() else {
                failures.push(format!("{id} {key}: recorded {} times", recorded.len()));
                continue;
            };
            let generation = payload_u64(&event.payload, "generation").unwrap_or(0);
            let token = payload_u64(&event.payload, "fencing_token").unwrap_or(0);
            let lines = effects.get(&(id.as_str(), step)).map_or(&[][..], Vec::as_slice);
            if !lines.iter().any(|line| line.generation == generation && line.token == token) {
                failures.push(format!("{id} {key}: recorded by generation {generation} without its side effect"));
            }
            let by_2 = lines.iter().any(|line| line.generation == 2);
            match generation {
                1 => {
                    recorded_by_1 += 1;
                    if by_2 {
                        verdict.done_again += 1;
                        failures.push(format!("{id} {key}: recorded by generation 1, done again by generation 2"));
                    }
                }
                2 => {
                    verdict.recorded_by_2 += 1;
                    if lines.iter().any(|line| line.generation == 1) {
                        redone.push(step);
                    }
                }
                other => failures.push(format!("{id} {key}: recorded by unknown generation {other}")),
            }
        }
        // Steps run in order, so only the one in flight at the kill can be
        // redone: the first step generation 1 did not record.
        if !redone.is_empty() && redone != [recorded_by_1 + 1] {
            failures.push(format!(
                "{id}: redone steps {redone:?}, but generation 1 recorded {recorded_by_1} (only step {} may be)",
                recorded_by_1 + 1
            ));
        }
        verdict.recorded_by_1 += recorded_by_1 as usize;
        verdict.redone += redone.len();
        // Every process has a first step: its first side effect names who did it.
        let Some(first) = ledger.iter().find(|line| line.process == id).map(|line| (line.generation, line.token))
        else {
            failures.push(format!("{id}: completed without any side effect"));
            continue;
        };
        let last = (final_generation, final_token);
        if first != last && first.1 >= final_token {
            failures.push(format!(
                "{id}: first step under token {}, finished under token {final_token}: not higher",
                first.1
            ));
        }
        if final_generation == 1 && ledger.iter().any(|line| line.process == id && line.generation == 2) {
            failures.push(format!("{id}: finished by generation 1, yet generation 2 did a step"));
        }
        *verdict.histogram.entry((first, last)).or_default() += 1;
    }
    verdict.failures.extend(failures);
    Ok(verdict)
}

fn print_verdict(verdict: &Verdict, args: &Args, child: &ChildReport, elapsed: Duration) {
    let row = |label: &str, value: String| println!("  {label:<58} {value:>8}");
    println!();
    println!("process-registry recovery: {} processes x {} steps, SIGKILL mid-run", args.processes, args.steps);
    row("processes completed (one terminal event each)", format!("{}/{}", verdict.completed, args.processes));
    row("reported by generation 1 before the kill: processes done", child.done.to_string());
    row("                                            steps recorded", child.steps.to_string());
    row("steps recorded by generation 1 (in the file)", verdict.recorded_by_1.to_string());
    row("  of them done again by generation 2", verdict.done_again.to_string());
    row("steps recorded by generation 2", verdict.recorded_by_2.to_string());
    row("  redone: side effect by gen 1, killed before its append", verdict.redone.to_string());
    row("side effects in the ledger", verdict.ledger_lines.to_string());
    println!("  how each process was claimed and finished:");
    for (((first_generation, first_token), (generation, token)), count) in &verdict.histogram {
        let label = match (first_generation, generation) {
            (1, 2) => format!("    gen 1 started (token {first_token}), gen 2 finished (token {token})"),
            (2, 2) if *token > 1 => format!("    gen 1 claimed, no step done; gen 2 did all (token {token})"),
            _ => format!("    gen {generation} did all (token {token})"),
        };
        row(&label, count.to_string());
    }
    row("elapsed", format!("{elapsed:.2?}"));
}

async fn run_parent(args: &Args) -> Result<bool, BoxError> {
    let started = Instant::now();
    let (dir, temporary) = match &args.path {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            for file in [REGISTRY_FILE, LEDGER_FILE] {
                if path.join(file).exists() {
                    return Err(
                        format!("{} exists: give the example a new directory", path.join(file).display()).into()
                    );
                }
            }
            (path.clone(), None)
        }
        None => {
            let temporary = tempfile::tempdir()?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };
    let bars = Arc::new(Bars::new(args.processes, args.steps)?);
    register(&dir, args.processes, args.steps).await?;
    bars.note(&format!("registered {} processes of {} steps in {}", args.processes, args.steps, dir.display()));
    let child = run_and_kill_child(&dir, args, &bars)?;
    let registry = run_generation_2(&dir, args, &bars).await?;
    bars.done.finish();
    bars.steps.finish();
    let verdict = check(&registry, &dir, args).await?;
    registry.shutdown().await;
    print_verdict(&verdict, args, &child, started.elapsed());
    if verdict.failures.is_empty() {
        return Ok(true);
    }
    for failure in &verdict.failures {
        eprintln!("check failed: {failure}");
    }
    if let Some(temporary) = temporary {
        eprintln!("the files are kept in {}", temporary.keep().display());
    }
    Ok(false)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    if args.child {
        let dir = args.path.clone().ok_or("--child needs --path")?;
        return run_child(&dir, args.processes, args.steps).await;
    }
    match run_parent(&args).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            eprintln!("recovery FAILED");
            std::process::exit(1);
        }
        Err(error) => {
            eprintln!("recovery FAILED: {error}");
            std::process::exit(1);
        }
    }
}
