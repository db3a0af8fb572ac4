//! `ProcessWorker` across a SIGKILL: a worker on a durable file is killed
//! mid-run, a new worker on the reopened file finishes every process
//! exactly once, and no step the killed worker had recorded is done again.
//!
//! # How
//!
//! The parent registers [`PROCESSES`] processes of [`STEPS`] steps in a
//! fresh SQLite file, closes it, and re-executes this test binary as a
//! child (test [`worker_crash_child`], selected with `--exact` and given
//! the directory in `PROCESS_REGISTRY_WORKER_CRASH_CHILD`). The child
//! opens the file and runs a [`ProcessWorker`] (generation 1). Its handler
//! does each process's steps in order; a step is some work, its *side
//! effect* (a line appended to a ledger file outside the registry, naming
//! generation, process, step and fencing token), then its record: a fenced
//! append with the replay key `step:{n}` whose payload names generation and
//! token. A step [`ProcessContext::recorded`] reports is skipped. The child
//! reports each recorded step and each finished process on stdout.
//!
//! Every [`STICKY_EVERY`]th process is *sticky* in generation 1: its
//! handler parks for good after recording step [`STICKY_PARKS_AFTER`]. So
//! generation 1 can never finish on its own, and some processes are
//! always unfinished, under a live lease, with steps recorded, when it is
//! killed. The parent kills the child with SIGKILL once every sticky
//! process has parked and [`DONE_BEFORE_KILL`] processes are done; the
//! other handlers are wherever they are (between a side effect and its
//! append, inside a SQLite commit).
//!
//! The parent then reopens the file (a SIGKILL leaves no lock behind) and
//! runs generation 2 under the same owner id, so it reclaims the killed
//! worker's leases at once (each with the next fencing token) instead of
//! waiting for them to expire; the lease ttl is long, so no lease expires
//! during the test however slow the machine. It checks, per process:
//!
//! - the process completed with the handler's outcome, and its log holds
//!   exactly one terminal event;
//! - every step key is recorded exactly once, and the step's ledger line
//!   (same generation and token) is there: the side effect came first;
//! - every step the child reported recorded is recorded by generation 1
//!   (an acknowledged append survives the kill);
//! - no step recorded by generation 1 has a generation-2 ledger line: it
//!   was not done again; a step done by both is only ever the first step
//!   generation 1 had not recorded (its side effect done, its append not
//!   committed at the kill: allowed, counted);
//! - no step was done twice under one lease; a process finished by
//!   generation 2 after generation 1 began it did so under a higher
//!   fencing token; a sticky process was finished by generation 2 under
//!   token 2 with exactly its first [`STICKY_PARKS_AFTER`] steps recorded
//!   by generation 1.
//!
//! Nothing here times anything: every wait is on a condition (a line from
//! the child, a process becoming terminal), bounded by [`WAIT_LIMIT`] only
//! so that a hang fails instead of running forever.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use process_registry::worker::{ProcessContext, ProcessWorker, WorkerConfig};
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessInput, ProcessRegistration, ProcessRegistry, ProcessStatus, RegistryConfig,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;

/// Set in the child to the directory; its presence makes [`worker_crash_child`] run.
const CHILD_ENV: &str = "PROCESS_REGISTRY_WORKER_CRASH_CHILD";
/// The child's test, run with `--exact`.
const CHILD_TEST: &str = "worker_crash_child";
/// Marks a report line among whatever else the test harness prints.
const MARKER: &str = "worker-crash ";
const PROCESSES: usize = 48;
const STEPS: u64 = 4;
/// Every this-many-th process is sticky in generation 1.
const STICKY_EVERY: usize = 12;
/// A sticky process's generation-1 handler parks after recording this step.
const STICKY_PARKS_AFTER: u64 = 2;
/// The kill comes once this many processes are done (and every sticky one parked).
const DONE_BEFORE_KILL: usize = 8;
/// Handlers at once per worker: the sticky ones hold some slots for good,
/// the rest keep working.
const CONCURRENCY: usize = 8;
/// Both generations run under this owner id: generation 2 reclaims at once.
const OWNER: &str = "crash-worker";
/// Long: no lease expires during the test, however loaded the machine.
const LEASE_TTL: Duration = Duration::from_secs(120);
/// A bound on every wait, so a hang fails the test; not a timing.
const WAIT_LIMIT: Duration = Duration::from_secs(120);
const JOB: &str = "crash.job";
const STEP: &str = "step";
const REGISTRY_FILE: &str = "registry.sqlite";
const LEDGER_FILE: &str = "ledger.jsonl";

// ---------------------------------------------------------------------------
// The job, as both generations run it
// ---------------------------------------------------------------------------

fn process_id(index: usize) -> String {
    format!("p-{index:02}")
}

fn is_sticky(index: usize) -> bool {
    index.is_multiple_of(STICKY_EVERY)
}

fn step_key(step: u64) -> String {
    format!("step:{step}")
}

fn registration(index: usize) -> ProcessRegistration {
    let mut args = serde_json::Map::new();
    args.insert("index".to_owned(), json!(index));
    let schema = json!({"type": "object", "required": ["step", "generation", "fencing_token"]});
    ProcessRegistration::new(process_id(index), ProcessInput::definition(JOB, args))
        .with_extra_event_types([ProcessEventType::new(STEP, schema)])
}

/// One side effect, as a line of the ledger file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LedgerLine {
    generation: u64,
    process: String,
    step: u64,
    token: u64,
}

/// The ledger file: one `write` per line on a file opened for appending,
/// so concurrent handlers never interleave and a SIGKILL leaves whole lines.
struct Ledger(File);

impl Ledger {
    fn open(dir: &Path) -> Self {
        Self(OpenOptions::new().create(true).append(true).open(dir.join(LEDGER_FILE)).expect("open the ledger"))
    }

    fn record(&self, line: &LedgerLine) -> std::io::Result<()> {
        let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
        text.push('\n');
        (&self.0).write_all(text.as_bytes())?;
        (&self.0).flush()
    }
}

/// What a generation's handler needs.
struct Job {
    generation: u64,
    ledger: Ledger,
    /// Generation 1 only: reports on stdout, and parks sticky processes.
    child: bool,
}

/// A short wait that varies by process and step, so handlers do not run
/// in lockstep and the kill finds them at different points.
fn work(process: &str, step: u64) -> Duration {
    let hash = process
        .bytes()
        .fold(step.wrapping_mul(0x9E37_79B9), |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3));
    Duration::from_millis(1 + (hash >> 32) % 5)
}

fn report(line: impl Display) {
    // One `println!` is one write of one line to the pipe.
    println!("{MARKER}{line}");
}

/// The handler: every step not recorded yet, in order: work, side effect,
/// a pause, record.
async fn run_job(job: Arc<Job>, context: ProcessContext) -> Result<ProcessAwaitOutput, String> {
    let (process, token) = (context.process_id().to_owned(), context.fencing_token());
    let index: usize = process.trim_start_matches("p-").parse().map_err(|error| format!("{process}: {error}"))?;
    for step in 1..=STEPS {
        let key = step_key(step);
        if context.recorded(&key).is_some() {
            continue;
        }
        tokio::time::sleep(work(&process, step)).await;
        let line = LedgerLine { generation: job.generation, process: process.clone(), step, token };
        job.ledger.record(&line).map_err(|error| format!("the ledger: {error}"))?;
        tokio::time::sleep(work(&process, step + STEPS)).await;
        let payload = json!({ "step": step, "generation": job.generation, "fencing_token": token });
        context
            .append(ProcessEventAppendRequest::new(STEP, payload).with_replay_key(key))
            .await
            .map_err(|e| e.to_string())?;
        if job.child {
            report(format_args!("step {process} {step}"));
            if is_sticky(index) && step == STICKY_PARKS_AFTER {
                report(format_args!("parked {process}"));
                std::future::pending::<()>().await;
            }
        }
    }
    Ok(ProcessAwaitOutput::success(json!({ "generation": job.generation, "fencing_token": token })))
}

fn start_worker(registry: &ActorProcessRegistry, job: Job) -> ProcessWorker {
    let registry: Arc<dyn FencedProcessRegistry> = Arc::new(registry.clone());
    let config = WorkerConfig {
        concurrency: CONCURRENCY,
        lease_ttl: LEASE_TTL,
        sweep_interval: Duration::from_millis(100),
        ..WorkerConfig::new(OWNER)
    };
    let job = Arc::new(job);
    ProcessWorker::builder(registry, config)
        .handler(JOB, move |context| run_job(Arc::clone(&job), context))
        .start()
        .expect("the worker starts")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

// ---------------------------------------------------------------------------
// The child: generation 1, until SIGKILL
// ---------------------------------------------------------------------------

/// Runs generation 1 when spawned by [`killed_worker_is_finished_without_redoing_recorded_steps`]
/// (with `PROCESS_REGISTRY_WORKER_CRASH_CHILD` set); a no-op in a normal run.
#[test]
fn worker_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    runtime().block_on(async move {
        let registry = ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default())
            .await
            .unwrap_or_else(|error| die(format!("open failed: {error}")));
        let _worker = start_worker(&registry, Job { generation: 1, ledger: Ledger::open(&dir), child: true });
        for index in 0..PROCESSES {
            let registry = registry.clone();
            tokio::spawn(async move {
                if registry.await_process(&process_id(index)).await.is_ok() {
                    report(format_args!("done {}", process_id(index)));
                }
            });
        }
        // Not an assertion: a bound on a child the parent failed to kill.
        tokio::time::sleep(WAIT_LIMIT).await;
        die("nobody killed this child");
    });
}

fn die(message: impl Display) -> ! {
    eprintln!("worker crash child: {message}");
    std::process::exit(3);
}

// ---------------------------------------------------------------------------
// The parent
// ---------------------------------------------------------------------------

/// What the child reported before it was killed.
#[derive(Debug, Default)]
struct Reported {
    /// (process, step) the child saw recorded.
    steps: BTreeSet<(String, u64)>,
    done: BTreeSet<String>,
    parked: BTreeSet<String>,
}

impl Reported {
    fn take(&mut self, line: &str) {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("step"), Some(process), Some(step)) => {
                self.steps.insert((process.to_owned(), step.parse().expect("a step number")));
            }
            (Some("done"), Some(process), None) => {
                self.done.insert(process.to_owned());
            }
            (Some("parked"), Some(process), None) => {
                self.parked.insert(process.to_owned());
            }
            _ => panic!("an unknown report from the child: {line}"),
        }
    }

    fn ready_to_kill(&self) -> bool {
        self.done.len() >= DONE_BEFORE_KILL && self.parked.len() == (0..PROCESSES).filter(|&i| is_sticky(i)).count()
    }
}

/// Runs generation 1 as a child and kills it with SIGKILL once it is
/// [`Reported::ready_to_kill`]; returns what it reported.
fn run_child_until_killed(dir: &Path) -> Reported {
    let stderr_path = dir.join("child.stderr");
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_path).expect("the child's stderr file"))
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        // A last line without its newline was cut by the kill: dropped.
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(read) if read > 0) && line.ends_with('\n') {
            if let Some(at) = line.find(MARKER) {
                if lines.send(line[at + MARKER.len()..].trim_end().to_owned()).is_err() {
                    break;
                }
            }
            line.clear();
        }
    });
    let mut reported = Reported::default();
    let started = Instant::now();
    while !reported.ready_to_kill() {
        match received.recv_timeout(WAIT_LIMIT.saturating_sub(started.elapsed())) {
            Ok(line) => reported.take(&line),
            Err(error) => {
                let _ = child.kill();
                let status = child.wait();
                let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("the child stopped short of the kill ({error}, {status:?}); it reported {reported:?}; its stderr:\n{stderr}");
            }
        }
    }
    // `Child::kill` is SIGKILL on Unix.
    child.kill().expect("kill the child");
    let status = child.wait().expect("wait for the child");
    assert!(status.code().is_none(), "the child exited on its own ({status})");
    reader.join().expect("the report reader");
    for line in received.try_iter() {
        reported.take(&line);
    }
    reported
}

/// Registers the processes in a new file and closes it.
async fn register(dir: &Path) {
    let registry =
        ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default()).await.expect("create the file");
    let mut registrations = JoinSet::new();
    for index in 0..PROCESSES {
        let registry = registry.clone();
        registrations.spawn(async move { registry.register_process(registration(index)).await });
    }
    while let Some(joined) = registrations.join_next().await {
        joined.expect("joined").expect("registered");
    }
    registry.shutdown().await;
}

/// Generation 2 on the reopened file, until every process is terminal.
async fn finish(dir: &Path) -> ActorProcessRegistry {
    let registry = ActorProcessRegistry::open(dir.join(REGISTRY_FILE), RegistryConfig::default())
        .await
        .expect("the file reopens after the SIGKILL");
    let worker = start_worker(&registry, Job { generation: 2, ledger: Ledger::open(dir), child: false });
    let mut waits = JoinSet::new();
    for index in 0..PROCESSES {
        let registry = registry.clone();
        waits.spawn(async move { registry.await_process(&process_id(index)).await });
    }
    let all = async {
        while let Some(joined) = waits.join_next().await {
            joined.expect("joined").expect("an outcome");
        }
    };
    let finished = tokio::time::timeout(WAIT_LIMIT, all).await;
    let stats = worker.shutdown(Duration::from_secs(10)).await;
    assert!(finished.is_ok(), "generation 2 did not finish every process; its worker: {stats:?}");
    assert_eq!((stats.failed, stats.handler_errors, stats.handler_panics), (0, 0, 0), "generation 2: {stats:?}");
    registry
}

fn read_ledger(dir: &Path) -> Vec<LedgerLine> {
    let text = std::fs::read_to_string(dir.join(LEDGER_FILE)).expect("read the ledger");
    assert!(text.is_empty() || text.ends_with('\n'), "the ledger ends in a partial line");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))).collect()
}

fn u64_field(value: &serde_json::Value, field: &str) -> u64 {
    value.get(field).and_then(serde_json::Value::as_u64).unwrap_or(0)
}

/// What the checks counted.
#[derive(Debug, Default)]
struct Counted {
    recorded_by_1: usize,
    recorded_by_2: usize,
    redone: usize,
    finished_by_1: usize,
    taken_over: usize,
}

/// Every check of the module docs; returns the counts and the findings.
async fn check(registry: &ActorProcessRegistry, ledger: &[LedgerLine], reported: &Reported) -> (Counted, Vec<String>) {
    let mut counted = Counted::default();
    let mut findings = Vec::new();
    let mut effects: BTreeMap<(&str, u64), Vec<&LedgerLine>> = BTreeMap::new();
    for line in ledger {
        effects.entry((line.process.as_str(), line.step)).or_default().push(line);
    }
    for ((process, step), lines) in &effects {
        let tokens: BTreeSet<u64> = lines.iter().map(|line| line.token).collect();
        if tokens.len() != lines.len() {
            findings.push(format!("{process} step {step}: done twice under one lease: {lines:?}"));
        }
    }
    for index in 0..PROCESSES {
        let id = process_id(index);
        let record = registry.get_process(&id).await.expect("every process is in the file");
        let events = registry.events_after(&id, 0).await.expect("the log");
        let terminal = events.iter().filter(|event| event.is_terminal()).count();
        if terminal != 1 {
            findings.push(format!("{id}: {terminal} terminal events"));
        }
        let ProcessStatus::Completed { await_output: ProcessAwaitOutput::Success { value } } = &record.status else {
            findings.push(format!("{id}: not completed with the handler's outcome: {:?}", record.status));
            continue;
        };
        let (final_generation, final_token) = (u64_field(value, "generation"), u64_field(value, "fencing_token"));
        let mut by_1 = 0;
        let mut redone = Vec::new();
        for step in 1..=STEPS {
            let key = step_key(step);
            let recorded: Vec<_> =
                events.iter().filter(|event| event.invocation.replay_key.as_deref() == Some(key.as_str())).collect();
            let [event] = recorded.as_slice() else {
                findings.push(format!("{id} {key}: recorded {} times", recorded.len()));
                continue;
            };
            let (generation, token) =
                (u64_field(&event.payload, "generation"), u64_field(&event.payload, "fencing_token"));
            let lines = effects.get(&(id.as_str(), step)).map_or(&[][..], Vec::as_slice);
            if !lines.iter().any(|line| line.generation == generation && line.token == token) {
                findings.push(format!("{id} {key}: recorded by generation {generation} without its side effect"));
            }
            if reported.steps.contains(&(id.clone(), step)) && generation != 1 {
                findings.push(format!("{id} {key}: the child saw it recorded, the file says generation {generation}"));
            }
            match generation {
                1 => {
                    by_1 += 1;
                    if lines.iter().any(|line| line.generation == 2) {
                        findings.push(format!("{id} {key}: recorded by generation 1, done again by generation 2"));
                    }
                }
                2 => {
                    counted.recorded_by_2 += 1;
                    if lines.iter().any(|line| line.generation == 1) {
                        redone.push(step);
                    }
                }
                other => findings.push(format!("{id} {key}: recorded by generation {other}")),
            }
        }
        if !redone.is_empty() && redone != [by_1 + 1] {
            findings.push(format!("{id}: redone steps {redone:?}, but generation 1 recorded {by_1}"));
        }
        counted.recorded_by_1 += by_1 as usize;
        counted.redone += redone.len();
        let gen_1_tokens: BTreeSet<u64> =
            ledger.iter().filter(|line| line.process == id && line.generation == 1).map(|line| line.token).collect();
        match final_generation {
            1 => {
                counted.finished_by_1 += 1;
                if ledger.iter().any(|line| line.process == id && line.generation == 2) {
                    findings.push(format!("{id}: finished by generation 1, yet generation 2 did a step"));
                }
            }
            2 if !gen_1_tokens.is_empty() => {
                counted.taken_over += 1;
                if gen_1_tokens.iter().any(|&token| token >= final_token) {
                    findings.push(format!(
                        "{id}: generation 1 worked under tokens {gen_1_tokens:?}, generation 2 under {final_token}"
                    ));
                }
            }
            2 => {}
            other => findings.push(format!("{id}: finished by generation {other}")),
        }
        if is_sticky(index) && (final_generation, final_token, by_1) != (2, 2, STICKY_PARKS_AFTER) {
            findings.push(format!(
                "{id} (sticky): finished by generation {final_generation} under token {final_token}, \
                 {by_1} steps recorded by generation 1; expected generation 2, token 2, {STICKY_PARKS_AFTER}"
            ));
        }
    }
    (counted, findings)
}

#[test]
fn killed_worker_is_finished_without_redoing_recorded_steps() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let dir = directory.path();
    let runtime = runtime();
    runtime.block_on(register(dir));
    let reported = run_child_until_killed(dir);
    let registry = runtime.block_on(finish(dir));
    let ledger = read_ledger(dir);
    let (counted, findings) = runtime.block_on(check(&registry, &ledger, &reported));
    runtime.block_on(registry.shutdown());
    println!(
        "worker_crash: the child reported {} done, {} steps; in the file: {} steps by generation 1, {} by \
         generation 2, {} redone (killed between side effect and append); {} finished by generation 1, {} taken \
         over; {} ledger lines",
        reported.done.len(),
        reported.steps.len(),
        counted.recorded_by_1,
        counted.recorded_by_2,
        counted.redone,
        counted.finished_by_1,
        counted.taken_over,
        ledger.len()
    );
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(counted.finished_by_1 >= DONE_BEFORE_KILL, "{counted:?}: the kill came before enough work was done");
    assert!(counted.taken_over >= 1, "{counted:?}: nothing was taken over, so nothing was tested");
}
