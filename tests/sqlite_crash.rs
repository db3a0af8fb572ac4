//! Issue "Durability": every acknowledged call survives a SIGKILL, and
//! nothing unacknowledged is half there.
//!
//! # How
//!
//! Each round, this test binary re-executes itself as a child (test
//! [`crash_child`], selected with `--exact` and given the database path in
//! `PROCESS_REGISTRY_CRASH_CHILD`). The child opens a registry on a fresh
//! file with [`ActorProcessRegistry::open`] and runs a concurrent workload
//! until it is killed: racing registrations of one id (some with a
//! conflicting registration), appends with deterministic replay keys
//! (`p{job}:step{n}`, several in flight on one process, one key appended
//! twice at once), an external ref, a wake and its ack, grant chains
//! (grant, re-grant, transfer, revoke, session deletion), lease chains
//! (claim, renew, release, re-claim) and `complete_process`, interleaved
//! with appends after the terminal event; beside them, readers
//! (`events_after` right after each append, while others are in flight)
//! and parked waiters (`wait_event_after`, `await_process`).
//!
//! The child writes its ledger to stdout, one JSON line per call, each
//! line flushed with one `write` to the pipe: a `begin` line before the
//! call is made, an `ack` line with the answer only after the call
//! returned `Ok`, and a `saw` line with what a read or a wait returned.
//! The parent reads the pipe while the child runs, kills the child with
//! SIGKILL ([`std::process::Child::kill`]) at a random moment between 50
//! and 500 ms after the child's first acknowledgement, and keeps every
//! complete line the kernel received before the kill.
//!
//! The parent then reopens the file and checks, process by process:
//!
//! - every acknowledged registration exists with the acknowledged
//!   registration (of two conflicting racers, only one is ever
//!   acknowledged); every stored process was asked for;
//! - every acknowledged append is at its acknowledged sequence with the
//!   payload the workload writes for its key; every event in the log is
//!   whole (its replay key was asked for, its type and payload are exactly
//!   what the workload writes for that key) and each key is there once;
//!   sequences are gapless from 1, through the registry and in the file;
//! - the grants of each process are the state after its last acknowledged
//!   grant change, or after the one change in flight at the kill; never a
//!   half transfer or a half session deletion;
//! - leases: a lease whose last change was acknowledged is the current one
//!   (it renews) or is released (renewing it fails); the fencing token in
//!   the file is at least every acknowledged claim's, and a new claim gets a
//!   strictly higher one;
//! - whatever a read or a parked waiter was shown before the kill is still
//!   there: nothing that was not yet committed was visible;
//! - a process whose completion was acknowledged is terminal with that
//!   outcome; a process is terminal exactly when its log holds its terminal
//!   event; an acknowledged external ref and wake ack are there;
//! - retrying every append that was begun (acknowledged or not) with its
//!   replay key returns the acknowledged sequence, or lands once: afterwards
//!   each key maps to exactly one event (counted from the events'
//!   `invocation.replay_key`); retrying begun completions and
//!   registrations is idempotent;
//! - after the registry is shut down, `PRAGMA integrity_check` on a
//!   read-only connection to the file says `ok`.
//!
//! # What it proves, and what it does not
//!
//! A SIGKILL proves the *order* of write and acknowledgement: no call is
//! answered before its commit reached SQLite, and what SQLite holds after
//! a crash is whole transactions. It does not prove the fsync: the page
//! cache outlives a killed process, so this test would pass with
//! `synchronous = NORMAL` too. That a commit is fsynced before its answer
//! rests on the writer's code path (`src/store/sqlite/writer.rs`: answers
//! after `COMMIT` under `synchronous = FULL`) and on tests that inject a
//! failing fsync (`StoreFaults::fail_next_sync`); power loss is not
//! simulated here.
//!
//! Timing picks the kill moment only; nothing here asserts a duration.
//!
//! # Size
//!
//! `PROCESS_REGISTRY_CRASH_ROUNDS` sets the rounds (default 3, a few
//! seconds in debug); each round is a fresh temporary directory. The
//! nightly size:
//!
//! ```sh
//! PROCESS_REGISTRY_CRASH_ROUNDS=20 cargo test --release --test sqlite_crash
//! ```
//!
//! The run prints its seed; `PROCESS_REGISTRY_CRASH_SEED=<seed>` replays
//! the same kill moments (the interleaving of the workload is the
//! scheduler's, so a replay is likely, not certain, to hit the same state).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use process_registry::store::LeaseState;
use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventType,
    ProcessExternalRef, ProcessHandleDescriptor, ProcessInput, ProcessLease, ProcessLeaseCompletion, ProcessListFilter,
    ProcessRecord, ProcessRegistration, ProcessRegistry, ProcessValueSelector, ProcessWakeSpec, RegistryConfig,
    RegistryError, SessionScope,
};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinSet;

/// Set in the child to the database path; its presence makes [`crash_child`] run.
const CHILD_ENV: &str = "PROCESS_REGISTRY_CRASH_CHILD";
/// How many crash rounds to run.
const ROUNDS_ENV: &str = "PROCESS_REGISTRY_CRASH_ROUNDS";
/// The seed of the kill moments, to replay a run.
const SEED_ENV: &str = "PROCESS_REGISTRY_CRASH_SEED";
const DEFAULT_ROUNDS: u64 = 3;
/// The child's test, run with `--exact`.
const CHILD_TEST: &str = "crash_child";
/// Marks a ledger line among whatever else the test harness prints.
const MARKER: &str = "crash-ledger ";
/// Concurrent workload tasks in the child.
const WORKERS: usize = 16;
/// The kill comes this many milliseconds after the child's first acknowledgement.
const KILL_AFTER_MS: (u64, u64) = (50, 500);
/// How long the parent waits for the child's first acknowledgement.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// A child nobody kills gives up after this long (and fails the round).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Long enough that no lease of a round expires before it is checked.
const LEASE_TTL_MS: u64 = 10 * 60 * 1000;
/// Steps appended after the terminal event (allowed on a terminal process).
const LATE_STEPS: u64 = 2;

// ---------------------------------------------------------------------------
// The workload: what each job does, as pure functions both sides share.
// ---------------------------------------------------------------------------

/// Which of two conflicting registrations of one id a racer sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Variant {
    A,
    B,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
}

/// One append of the workload; its replay key and payload follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "n", rename_all = "snake_case")]
enum Append {
    Step(u64),
    Ping,
}

/// One grant change of a job's grant chain.
#[derive(Clone, Debug)]
enum GrantOp {
    Grant(SessionScope, String),
    Transfer(SessionScope, SessionScope),
    Revoke(SessionScope),
    DeleteSession(String),
}

/// One lease change of a job's lease chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseOp {
    Claim,
    Renew,
    Release,
}

/// A process's grants: scope id -> descriptor label.
type GrantState = BTreeMap<String, String>;

fn process_id(job: u64) -> String {
    format!("p{job}")
}

fn owner(job: u64) -> String {
    format!("owner-p{job}")
}

fn registration(job: u64, variant: Variant) -> ProcessRegistration {
    let mut args = serde_json::Map::new();
    args.insert("variant".to_owned(), json!(variant.name()));
    ProcessRegistration::new(process_id(job), ProcessInput::definition("crash", args)).with_extra_event_types([
        ProcessEventType::new("step", json!({"type": "object", "required": ["process", "step", "pad"]})),
        ProcessEventType::new("ping", json!({"type": "object", "required": ["note"]}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/note".to_owned()))),
    ])
}

fn variant_of(record: &ProcessRecord) -> Option<Variant> {
    let ProcessInput::Definition { args, .. } = &record.input else {
        return None;
    };
    match args.get("variant")?.as_str()? {
        "a" => Some(Variant::A),
        "b" => Some(Variant::B),
        _ => None,
    }
}

/// The registrations racing for one id: equal ones, and for every third
/// job a conflicting one.
fn racers(job: u64) -> Vec<Variant> {
    if job.is_multiple_of(3) {
        vec![Variant::A, Variant::A, Variant::B]
    } else {
        vec![Variant::A, Variant::A]
    }
}

/// Steps appended before the completion (all at once).
fn early_steps(job: u64) -> u64 {
    2 + job % 4
}

/// Every append the workload may send for `job`.
fn appends(job: u64) -> impl Iterator<Item = Append> {
    (1..=early_steps(job) + LATE_STEPS).map(Append::Step).chain([Append::Ping])
}

fn replay_key(job: u64, append: Append) -> String {
    match append {
        Append::Step(n) => format!("p{job}:step{n}"),
        Append::Ping => format!("p{job}:ping"),
    }
}

fn append_request(job: u64, append: Append) -> ProcessEventAppendRequest {
    let (event_type, payload) = match append {
        Append::Step(n) => {
            let pad = "x".repeat(usize::try_from((job * 31 + n * 17) % 300).unwrap_or(0));
            ("step", json!({"process": process_id(job), "step": n, "pad": pad}))
        }
        Append::Ping => ("ping", json!({"note": format!("ping {}", process_id(job))})),
    };
    ProcessEventAppendRequest::new(event_type, payload).with_replay_key(replay_key(job, append))
}

fn external_ref(job: u64) -> ProcessExternalRef {
    ProcessExternalRef {
        backend: "crash-queue".to_owned(),
        id: format!("ext-{job}"),
        metadata: Some(json!({"job": job})),
    }
}

/// How the job ends, if it does.
fn outcome(job: u64) -> Option<ProcessAwaitOutput> {
    match job % 4 {
        0 => Some(ProcessAwaitOutput::success(json!({"job": job}))),
        2 => Some(ProcessAwaitOutput::failure("crash_test", format!("job {job} failed"))),
        _ => None,
    }
}

/// The replay key `complete_process` gives the terminal event of `output`.
fn terminal_key(job: u64, output: &ProcessAwaitOutput) -> String {
    format!("process:{}:terminal:{}", process_id(job), output.terminal_state().event_type())
}

fn descriptor(label: &str) -> ProcessHandleDescriptor {
    ProcessHandleDescriptor { kind: Some("crash".to_owned()), label: Some(label.to_owned()) }
}

/// The grant changes of `job`, in order. Scopes `s{k}` and `t{k}` are
/// shared by many processes; session `d{job}` is the job's own, so deleting
/// it touches this process's grants only.
fn grant_chain(job: u64) -> Vec<GrantOp> {
    let home = SessionScope::new(format!("s{}", job % 4));
    let mut ops = vec![GrantOp::Grant(home.clone(), format!("p{job}:first"))];
    match job % 3 {
        0 => {
            ops.push(GrantOp::Grant(home.clone(), format!("p{job}:second")));
            ops.push(GrantOp::Transfer(
                home,
                SessionScope::with_frame(format!("s{}", (job + 1) % 4), format!("f{job}")),
            ));
        }
        1 => {
            let away = SessionScope::new(format!("t{}", job % 4));
            ops.push(GrantOp::Transfer(home, away.clone()));
            ops.push(GrantOp::Revoke(away));
        }
        _ => ops.push(GrantOp::Revoke(home)),
    }
    if job.is_multiple_of(2) {
        let session = format!("d{job}");
        ops.push(GrantOp::Grant(SessionScope::with_frame(&session, "a"), format!("p{job}:a")));
        ops.push(GrantOp::Grant(SessionScope::with_frame(&session, "b"), format!("p{job}:b")));
        ops.push(GrantOp::DeleteSession(session));
    }
    ops
}

fn apply_grant(state: &mut GrantState, op: &GrantOp) {
    match op {
        GrantOp::Grant(scope, label) => {
            state.insert(scope.id().0, label.clone());
        }
        GrantOp::Transfer(from, to) => {
            if let Some(label) = state.remove(&from.id().0) {
                state.insert(to.id().0, label);
            }
        }
        GrantOp::Revoke(scope) => {
            state.remove(&scope.id().0);
        }
        GrantOp::DeleteSession(session) => {
            let whole = SessionScope::new(session.as_str()).id().0;
            let frames = format!("{whole}/");
            state.retain(|scope_id, _| *scope_id != whole && !scope_id.starts_with(&frames));
        }
    }
}

/// Every scope `job`'s grant chain touches.
fn grant_scopes(job: u64) -> BTreeSet<SessionScope> {
    grant_chain(job)
        .into_iter()
        .flat_map(|op| match op {
            GrantOp::Grant(scope, _) | GrantOp::Revoke(scope) => vec![scope],
            GrantOp::Transfer(from, to) => vec![from, to],
            GrantOp::DeleteSession(_) => Vec::new(),
        })
        .collect()
}

/// The lease changes of `job`, in order, all by [`owner`].
fn lease_chain(job: u64) -> Vec<LeaseOp> {
    let mut ops = vec![LeaseOp::Claim, LeaseOp::Renew];
    if job.is_multiple_of(2) {
        ops.push(LeaseOp::Release);
    }
    if job.is_multiple_of(5) {
        ops.push(LeaseOp::Claim);
    }
    ops
}

// ---------------------------------------------------------------------------
// The ledger: what the child says it asked and what it was answered.
// ---------------------------------------------------------------------------

/// One call of the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
enum Call {
    Register {
        job: u64,
        variant: Variant,
    },
    Append {
        job: u64,
        append: Append,
    },
    ExternalRef {
        job: u64,
    },
    AckWake {
        job: u64,
        sequence: u64,
    },
    /// Step `step` of [`grant_chain`].
    Grant {
        job: u64,
        step: usize,
    },
    /// Step `step` of [`lease_chain`].
    Lease {
        job: u64,
        step: usize,
    },
    Complete {
        job: u64,
    },
}

impl Call {
    fn job(&self) -> u64 {
        match self {
            Self::Register { job, .. }
            | Self::Append { job, .. }
            | Self::ExternalRef { job }
            | Self::AckWake { job, .. }
            | Self::Grant { job, .. }
            | Self::Lease { job, .. }
            | Self::Complete { job } => *job,
        }
    }
}

/// What an acknowledged call answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
enum Answer {
    Done,
    Registered { variant: Variant },
    Appended { sequence: u64 },
    Leased { lease: ProcessLease },
}

/// What a read or a parked waiter returned: it must survive the crash
/// too, since nothing that is not durable may be visible.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "sight", rename_all = "snake_case")]
enum Sight {
    /// An event returned by `wait_event_after` or `events_after`.
    Event { sequence: u64, key: Option<String> },
    /// The output `await_process` returned.
    Terminal { output: ProcessAwaitOutput },
}

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
enum Line {
    /// The first acknowledgement is written: the parent starts its kill timer.
    Started,
    /// Written (and in the pipe) before the call is made.
    Begin { call: Call },
    /// Written only after the call returned `Ok`.
    Ack { call: Call, answer: Answer },
    /// Written after a read or a wait returned.
    Saw { job: u64, sight: Sight },
}

// ---------------------------------------------------------------------------
// The child: the workload, until SIGKILL.
// ---------------------------------------------------------------------------

/// Runs the workload when spawned by [`acknowledged_calls_survive_sigkill`]
/// (with `PROCESS_REGISTRY_CRASH_CHILD` set); a no-op in a normal run.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let registry = ActorProcessRegistry::open(PathBuf::from(path), RegistryConfig::default())
            .await
            .unwrap_or_else(|error| die(format!("open failed: {error}")));
        let ledger = Arc::new(Ledger::default());
        let next_job = Arc::new(AtomicU64::new(0));
        for _ in 0..WORKERS {
            let (registry, ledger, next_job) = (registry.clone(), Arc::clone(&ledger), Arc::clone(&next_job));
            tokio::spawn(async move {
                loop {
                    run_job(&registry, next_job.fetch_add(1, Ordering::Relaxed), &ledger).await;
                }
            });
        }
        // Not an assertion: a bound on a child the parent failed to kill.
        tokio::time::sleep(CHILD_LIFETIME).await;
        die("nobody killed this child");
    });
}

/// Anything unexpected in the child ends it at once, with a message: the
/// parent reports a child that exits on its own as a failure.
fn die(message: impl Display) -> ! {
    eprintln!("crash child: {message}");
    std::process::exit(3);
}

fn ok_or_die<T>(call: &Call, result: Result<T, RegistryError>) -> T {
    result.unwrap_or_else(|error| die(format!("{call:?} failed: {error}")))
}

/// Writes ledger lines to stdout, each with one write and a flush.
#[derive(Debug, Default)]
struct Ledger {
    started: AtomicBool,
}

impl Ledger {
    fn write(&self, line: &Line) {
        let json = serde_json::to_string(line).unwrap_or_else(|error| die(format!("ledger line: {error}")));
        let text = format!("{MARKER}{json}\n");
        let mut out = std::io::stdout().lock();
        if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
            die("the ledger pipe is closed");
        }
    }

    fn begin(&self, call: &Call) {
        self.write(&Line::Begin { call: call.clone() });
    }

    fn ack(&self, call: Call, answer: Answer) {
        self.write(&Line::Ack { call, answer });
        if !self.started.swap(true, Ordering::AcqRel) {
            self.write(&Line::Started);
        }
    }

    fn saw(&self, job: u64, sight: Sight) {
        self.write(&Line::Saw { job, sight });
    }
}

/// One job: racing registrations, then everything else on the process,
/// many calls at once.
async fn run_job(registry: &ActorProcessRegistry, job: u64, ledger: &Arc<Ledger>) {
    let mut racing = JoinSet::new();
    for variant in racers(job) {
        let (registry, ledger) = (registry.clone(), Arc::clone(ledger));
        racing.spawn(async move {
            let call = Call::Register { job, variant };
            ledger.begin(&call);
            match registry.register_process(registration(job, variant)).await {
                Ok(record) if variant_of(&record) == Some(variant) => {
                    ledger.ack(call, Answer::Registered { variant });
                    true
                }
                Ok(record) => die(format!("{call:?} answered another registration: {record:?}")),
                Err(RegistryError::RegistrationConflict { .. }) => false,
                Err(error) => die(format!("{call:?} failed: {error}")),
            }
        });
    }
    let mut registered = false;
    while let Some(won) = racing.join_next().await {
        registered |= won.unwrap_or_else(|error| die(error));
    }
    if !registered {
        die(format!("no registration of job {job} succeeded"));
    }

    // Grant changes go through the supervisor and do not care whether the
    // process is terminal: they run beside both phases, and so do readers.
    let mut beside = JoinSet::new();
    beside.spawn(run_grants(registry.clone(), Arc::clone(ledger), job));
    beside.spawn(watch_steps(registry.clone(), Arc::clone(ledger), job));
    if let Some(output) = outcome(job) {
        beside.spawn(await_outcome(registry.clone(), Arc::clone(ledger), job, output));
    }
    let mut calls = JoinSet::new();
    for n in 1..=early_steps(job) {
        calls.spawn(append(registry.clone(), Arc::clone(ledger), job, Append::Step(n)));
    }
    // The same key twice at once: both answers must name one event.
    calls.spawn(append(registry.clone(), Arc::clone(ledger), job, Append::Step(1)));
    calls.spawn(set_external_ref(registry.clone(), Arc::clone(ledger), job));
    calls.spawn(ping_and_ack(registry.clone(), Arc::clone(ledger), job));
    calls.spawn(run_leases(registry.clone(), Arc::clone(ledger), job));
    join_all(calls).await;

    let mut calls = JoinSet::new();
    if let Some(output) = outcome(job) {
        calls.spawn(complete(registry.clone(), Arc::clone(ledger), job, output));
    }
    for n in early_steps(job) + 1..=early_steps(job) + LATE_STEPS {
        calls.spawn(append(registry.clone(), Arc::clone(ledger), job, Append::Step(n)));
    }
    join_all(calls).await;
    join_all(beside).await;
}

async fn join_all(mut calls: JoinSet<()>) {
    while let Some(joined) = calls.join_next().await {
        joined.unwrap_or_else(|error| die(error));
    }
}

async fn append(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64, append: Append) {
    append_sequence(&registry, &ledger, job, append).await;
}

async fn append_sequence(registry: &ActorProcessRegistry, ledger: &Ledger, job: u64, append: Append) -> u64 {
    let call = Call::Append { job, append };
    ledger.begin(&call);
    let result = ok_or_die(&call, registry.append_event(&process_id(job), append_request(job, append)).await);
    let sequence = result.event.sequence;
    ledger.ack(call, Answer::Appended { sequence });
    // Other appends on this process are in flight now: a read must show
    // none of them before they are durable.
    read_last(registry, ledger, job).await;
    sequence
}

/// Reads the log and records its last event.
async fn read_last(registry: &ActorProcessRegistry, ledger: &Ledger, job: u64) {
    let process = process_id(job);
    let events =
        registry.events_after(&process, 0).await.unwrap_or_else(|error| die(format!("reading {process}: {error}")));
    if let Some(last) = events.last() {
        ledger.saw(job, Sight::Event { sequence: last.sequence, key: last.invocation.replay_key.clone() });
    }
}

/// Parks for each next step event and reads the log after it, recording
/// what was seen. `early_steps` step events always come, so it ends.
async fn watch_steps(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64) {
    let process = process_id(job);
    let mut after = 0;
    for _ in 0..early_steps(job) {
        let event = registry
            .wait_event_after(&process, "step", after)
            .await
            .unwrap_or_else(|error| die(format!("waiting on {process}: {error}")));
        ledger.saw(job, Sight::Event { sequence: event.sequence, key: event.invocation.replay_key });
        read_last(&registry, &ledger, job).await;
        after = event.sequence;
    }
}

/// Parks until the process ends, recording the output it was given.
async fn await_outcome(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64, expected: ProcessAwaitOutput) {
    let output = registry
        .await_process(&process_id(job))
        .await
        .unwrap_or_else(|error| die(format!("awaiting job {job}: {error}")));
    if output != expected {
        die(format!("job {job} ended with {output:?}, not {expected:?}"));
    }
    ledger.saw(job, Sight::Terminal { output });
}

async fn set_external_ref(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64) {
    let call = Call::ExternalRef { job };
    ledger.begin(&call);
    ok_or_die(&call, registry.set_external_ref(&process_id(job), external_ref(job)).await);
    ledger.ack(call, Answer::Done);
}

async fn ping_and_ack(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64) {
    let sequence = append_sequence(&registry, &ledger, job, Append::Ping).await;
    let call = Call::AckWake { job, sequence };
    ledger.begin(&call);
    ok_or_die(&call, registry.ack_wake(&process_id(job), sequence).await);
    ledger.ack(call, Answer::Done);
}

async fn run_grants(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64) {
    let process = process_id(job);
    for (step, op) in grant_chain(job).iter().enumerate() {
        let call = Call::Grant { job, step };
        ledger.begin(&call);
        match op {
            GrantOp::Grant(scope, label) => {
                ok_or_die(&call, registry.grant_handle(scope, &process, descriptor(label)).await);
            }
            GrantOp::Transfer(from, to) => {
                ok_or_die(&call, registry.transfer_handle_grants(from, to, std::slice::from_ref(&process)).await);
            }
            GrantOp::Revoke(scope) => ok_or_die(&call, registry.revoke_handle(scope, &process).await),
            GrantOp::DeleteSession(session) => {
                let report = ok_or_die(&call, registry.delete_session_process_state(session).await);
                if report.revoked_handle_count != 2 {
                    die(format!("{call:?} revoked {} grants, not 2", report.revoked_handle_count));
                }
            }
        }
        ledger.ack(call, Answer::Done);
    }
}

async fn run_leases(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64) {
    let process = process_id(job);
    let mut current: Option<ProcessLease> = None;
    for (step, op) in lease_chain(job).into_iter().enumerate() {
        let call = Call::Lease { job, step };
        ledger.begin(&call);
        match (op, current.take()) {
            (LeaseOp::Claim, _) => {
                let lease = ok_or_die(&call, registry.claim_process_lease(&process, &owner(job), LEASE_TTL_MS).await);
                ledger.ack(call, Answer::Leased { lease: lease.clone() });
                current = Some(lease);
            }
            (LeaseOp::Renew, Some(held)) => {
                let lease = ok_or_die(&call, registry.renew_process_lease(&held, LEASE_TTL_MS).await);
                ledger.ack(call, Answer::Leased { lease: lease.clone() });
                current = Some(lease);
            }
            (LeaseOp::Release, Some(held)) => {
                ok_or_die(&call, registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&held)).await);
                ledger.ack(call, Answer::Done);
            }
            (op, None) => die(format!("lease chain of job {job}: {op:?} without a lease")),
        }
    }
}

async fn complete(registry: ActorProcessRegistry, ledger: Arc<Ledger>, job: u64, output: ProcessAwaitOutput) {
    let call = Call::Complete { job };
    ledger.begin(&call);
    let record = ok_or_die(&call, registry.complete_process(&process_id(job), output.clone()).await);
    if record.status.await_output() != Some(&output) {
        die(format!("{call:?} answered a record with status {:?}", record.status));
    }
    ledger.ack(call, Answer::Done);
}

// ---------------------------------------------------------------------------
// The parent: spawn, kill, read the ledger.
// ---------------------------------------------------------------------------

/// A small xorshift generator: the kill moments, replayable from the seed.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(error) => panic!("{name} must be a whole number, not `{value}`: {error}"),
    }
}

/// Runs the child on `path`, kills it `delay` after its first
/// acknowledgement, and returns every complete ledger line it wrote.
fn run_child_until_killed(path: &Path, delay: Duration) -> Result<Vec<Line>, String> {
    let stderr_path = path.with_extension("child-stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|error| format!("child stderr file: {error}"))?;
    let mut child = Command::new(std::env::current_exe().map_err(|error| format!("test binary: {error}"))?)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|error| format!("spawn the child: {error}"))?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let (started, on_start) = mpsc::channel();
    let reader = std::thread::spawn(move || read_ledger(stdout, &started));
    let child_stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    if on_start.recv_timeout(START_TIMEOUT).is_err() {
        let _ = child.kill();
        let status = child.wait();
        let _ = reader.join();
        return Err(format!("the child never acknowledged a call ({status:?}); its stderr:\n{}", child_stderr()));
    }
    // The one use of time in this test: when to kill.
    std::thread::sleep(delay);
    if let Ok(Some(status)) = child.try_wait() {
        let _ = reader.join();
        return Err(format!("the child exited on its own ({status}) before the kill; its stderr:\n{}", child_stderr()));
    }
    child.kill().map_err(|error| format!("kill the child: {error}"))?;
    let status = child.wait().map_err(|error| format!("wait for the child: {error}"))?;
    if status.code().is_some() {
        let _ = reader.join();
        return Err(format!("the child exited on its own ({status}); its stderr:\n{}", child_stderr()));
    }
    reader.join().map_err(|_| "the ledger reader panicked".to_owned())?
}

/// Reads ledger lines until the pipe closes. A last line without its
/// newline was cut by the kill and is dropped: the child had not finished
/// writing it, so it acknowledges nothing.
fn read_ledger(stdout: impl Read, started: &mpsc::Sender<()>) -> Result<Vec<Line>, String> {
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        let read = reader.read_until(b'\n', &mut buffer).map_err(|error| format!("read the ledger: {error}"))?;
        if read == 0 || buffer.last() != Some(&b'\n') {
            return Ok(lines);
        }
        let text = String::from_utf8_lossy(&buffer);
        let Some(at) = text.find(MARKER) else {
            continue;
        };
        let json = text[at + MARKER.len()..].trim_end();
        let line: Line =
            serde_json::from_str(json).map_err(|error| format!("a ledger line does not parse ({error}): {json}"))?;
        if line == Line::Started {
            let _ = started.send(());
        }
        lines.push(line);
    }
}

// ---------------------------------------------------------------------------
// What the ledger says about each job.
// ---------------------------------------------------------------------------

/// A call made at most once per job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Progress {
    #[default]
    NotBegun,
    Begun,
    Acked,
}

impl Progress {
    fn begun(self) -> bool {
        self != Self::NotBegun
    }
}

/// What one job asked for and was answered, from the ledger.
#[derive(Clone, Debug, Default)]
struct JobLedger {
    registrations_begun: BTreeSet<Variant>,
    registered: Option<Variant>,
    appends_begun: BTreeSet<Append>,
    appended: BTreeMap<Append, u64>,
    external_ref: Progress,
    wake_acks_begun: BTreeSet<u64>,
    wake_acked: BTreeSet<u64>,
    /// Grant chain steps begun and acknowledged (prefixes of the chain).
    grants_begun: usize,
    grants_acked: usize,
    lease_begun: usize,
    /// The answers of the acknowledged lease steps, in order (`None` for a release).
    leases: Vec<Option<ProcessLease>>,
    complete: Progress,
    /// What reads and waits returned.
    sights: Vec<Sight>,
}

impl JobLedger {
    fn begin(&mut self, call: &Call) -> Result<(), String> {
        match *call {
            Call::Register { variant, .. } => {
                self.registrations_begun.insert(variant);
            }
            Call::Append { append, .. } => {
                self.appends_begun.insert(append);
            }
            Call::ExternalRef { .. } => self.external_ref = Progress::Begun,
            Call::AckWake { sequence, .. } => {
                self.wake_acks_begun.insert(sequence);
            }
            Call::Grant { step, .. } => {
                if step != self.grants_acked || step != self.grants_begun {
                    return Err(format!("grant step {step} began out of order"));
                }
                self.grants_begun += 1;
            }
            Call::Lease { step, .. } => {
                if step != self.leases.len() || step != self.lease_begun {
                    return Err(format!("lease step {step} began out of order"));
                }
                self.lease_begun += 1;
            }
            Call::Complete { .. } => self.complete = Progress::Begun,
        }
        Ok(())
    }

    fn ack(&mut self, call: &Call, answer: &Answer) -> Result<(), String> {
        match (call, answer) {
            (Call::Register { variant, .. }, Answer::Registered { variant: answered }) if variant == answered => {
                if self.registered.is_some_and(|before| before != *variant) {
                    return Err("two conflicting registrations were both acknowledged".to_owned());
                }
                self.registered = Some(*variant);
            }
            (Call::Append { append, .. }, Answer::Appended { sequence }) => {
                if let Some(before) = self.appended.insert(*append, *sequence) {
                    if before != *sequence {
                        return Err(format!("{append:?} was answered with sequences {before} and {sequence}"));
                    }
                }
            }
            (Call::ExternalRef { .. }, Answer::Done) => self.external_ref = Progress::Acked,
            (Call::AckWake { sequence, .. }, Answer::Done) => {
                self.wake_acked.insert(*sequence);
            }
            (Call::Grant { step, .. }, Answer::Done) if *step == self.grants_acked => self.grants_acked += 1,
            (Call::Lease { step, .. }, Answer::Leased { lease }) if *step == self.leases.len() => {
                self.leases.push(Some(lease.clone()));
            }
            (Call::Lease { step, .. }, Answer::Done) if *step == self.leases.len() => self.leases.push(None),
            (Call::Complete { .. }, Answer::Done) => self.complete = Progress::Acked,
            (call, answer) => return Err(format!("unexpected acknowledgement {answer:?} of {call:?}")),
        }
        Ok(())
    }

    /// Acknowledged calls by kind, for the round's summary: registrations,
    /// appends, external refs, wake acks, grant changes, lease changes,
    /// completions.
    fn acked(&self) -> [usize; 7] {
        [
            usize::from(self.registered.is_some()),
            self.appended.len(),
            usize::from(self.external_ref == Progress::Acked),
            self.wake_acked.len(),
            self.grants_acked,
            self.leases.len(),
            usize::from(self.complete == Progress::Acked),
        ]
    }

    /// Calls begun and not acknowledged: in flight at the kill.
    fn in_flight(&self) -> usize {
        let registration = usize::from(self.registered.is_none() && !self.registrations_begun.is_empty());
        registration + self.appends_begun.len() - self.appended.len()
            + usize::from(self.external_ref == Progress::Begun)
            + self.wake_acks_begun.len()
            - self.wake_acked.len()
            + self.grants_begun
            - self.grants_acked
            + self.lease_begun
            - self.leases.len()
            + usize::from(self.complete == Progress::Begun)
    }
}

/// The ledger by job. Checks the ledger's own order: every acknowledgement
/// follows its begin.
fn jobs_of(lines: &[Line]) -> Result<BTreeMap<u64, JobLedger>, String> {
    let mut jobs: BTreeMap<u64, JobLedger> = BTreeMap::new();
    let mut begun: BTreeMap<String, usize> = BTreeMap::new();
    for line in lines {
        match line {
            Line::Started => {}
            Line::Begin { call } => {
                let job = jobs.entry(call.job()).or_default();
                job.begin(call).map_err(|error| format!("{}: {error}", process_id(call.job())))?;
                *begun.entry(format!("{call:?}")).or_default() += 1;
            }
            Line::Ack { call, answer } => {
                let key = format!("{call:?}");
                match begun.get_mut(&key) {
                    Some(open) if *open > 0 => *open -= 1,
                    _ => return Err(format!("{call:?} was acknowledged without a begin")),
                }
                let job = jobs.entry(call.job()).or_default();
                job.ack(call, answer).map_err(|error| format!("{}: {error}", process_id(call.job())))?;
            }
            Line::Saw { job, sight } => jobs.entry(*job).or_default().sights.push(sight.clone()),
        }
    }
    Ok(jobs)
}

// ---------------------------------------------------------------------------
// The checks after the crash.
// ---------------------------------------------------------------------------

/// What checking one job leaves for the file-level checks.
#[derive(Debug, Default)]
struct Checked {
    /// The highest fencing token anyone was handed for the process.
    fencing_floor: u64,
}

macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// Reopens the file, checks every job against its ledger, retries what was
/// in flight, and shuts the registry down. Returns the fencing floor of
/// every process and every violation found.
async fn check_reopened(path: PathBuf, jobs: Arc<BTreeMap<u64, JobLedger>>) -> (BTreeMap<String, u64>, Vec<String>) {
    let registry = match ActorProcessRegistry::open(&path, RegistryConfig::default()).await {
        Ok(registry) => registry,
        Err(error) => return (BTreeMap::new(), vec![format!("reopening the file after the kill failed: {error}")]),
    };
    let mut findings = Vec::new();
    match registry.list_processes(&ProcessListFilter::any()).await {
        Ok(records) => {
            for record in records {
                let asked = record
                    .id
                    .strip_prefix('p')
                    .and_then(|job| job.parse::<u64>().ok())
                    .and_then(|job| jobs.get(&job))
                    .is_some_and(|job| !job.registrations_begun.is_empty());
                if !asked {
                    findings.push(format!("{}: stored, but nobody registered it", record.id));
                }
            }
        }
        Err(error) => findings.push(format!("list_processes failed: {error}")),
    }
    let mut checks = JoinSet::new();
    for job in jobs.keys().copied() {
        let (registry, jobs) = (registry.clone(), Arc::clone(&jobs));
        checks.spawn(async move {
            let result = match jobs.get(&job) {
                Some(ledger) => check_job(&registry, job, ledger).await,
                None => Ok(Checked::default()),
            };
            (job, result)
        });
    }
    let mut floors = BTreeMap::new();
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok((job, Ok(checked))) => {
                floors.insert(process_id(job), checked.fencing_floor);
            }
            Ok((job, Err(finding))) => findings.push(format!("{}: {finding}", process_id(job))),
            Err(error) => findings.push(format!("a check panicked: {error}")),
        }
    }
    registry.shutdown().await;
    (floors, findings)
}

async fn check_job(registry: &ActorProcessRegistry, job: u64, ledger: &JobLedger) -> Result<Checked, String> {
    let process = process_id(job);
    let Some(record) = registry.get_process(&process).await else {
        ensure!(ledger.registered.is_none(), "the acknowledged registration is lost");
        // Nothing else could have begun before a registration was answered.
        ensure!(ledger.appends_begun.is_empty() && ledger.grants_begun == 0, "calls began on an unregistered process");
        retry_registrations(registry, job, ledger, None).await?;
        return Ok(Checked::default());
    };
    let stored = variant_of(&record);
    ensure!(
        stored.is_some_and(|variant| ledger.registrations_begun.contains(&variant)),
        "the stored registration {stored:?} was never sent (sent: {:?})",
        ledger.registrations_begun
    );
    if let Some(acked) = ledger.registered {
        ensure!(stored == Some(acked), "registration {acked:?} was acknowledged, {stored:?} is stored");
    }

    let events = events_of(registry, &process).await?;
    check_log(job, ledger, &events)?;
    check_record(job, ledger, &record, &events)?;
    check_sights(ledger, &record, &events)?;
    check_wake_acks(registry, job, ledger, &events).await?;
    check_grants(registry, job, ledger).await?;
    let checked = check_leases(registry, job, ledger, &record).await?;

    // Retry everything that was begun; each key must end up with one event.
    for &append in &ledger.appends_begun {
        let result = registry
            .append_event(&process, append_request(job, append))
            .await
            .map_err(|error| format!("retrying {append:?} failed: {error}"))?;
        if let Some(&acked) = ledger.appended.get(&append) {
            ensure!(
                result.event.sequence == acked,
                "retrying acknowledged {append:?} answered sequence {}, not {acked}",
                result.event.sequence
            );
        }
    }
    if ledger.complete.begun() {
        if let Some(output) = outcome(job) {
            let record = registry
                .complete_process(&process, output.clone())
                .await
                .map_err(|error| format!("retrying the completion failed: {error}"))?;
            ensure!(record.status.await_output() == Some(&output), "the retried completion left {:?}", record.status);
        }
    }
    retry_registrations(registry, job, ledger, stored).await?;
    let events = events_of(registry, &process).await?;
    check_log(job, ledger, &events)?;
    for &append in &ledger.appends_begun {
        let key = replay_key(job, append);
        let count = events.iter().filter(|event| event.invocation.replay_key.as_deref() == Some(key.as_str())).count();
        ensure!(count == 1, "after retrying, key {key} has {count} events");
    }
    let terminal = events.iter().filter(|event| event.is_terminal()).count();
    ensure!(terminal == usize::from(ledger.complete.begun()), "after retrying, {terminal} terminal events");
    Ok(checked)
}

/// Sends every registration that was begun again: the stored one is
/// idempotent, the other conflicts; with nothing stored, one lands.
async fn retry_registrations(
    registry: &ActorProcessRegistry,
    job: u64,
    ledger: &JobLedger,
    stored: Option<Variant>,
) -> Result<(), String> {
    let mut winner = stored;
    for &variant in &ledger.registrations_begun {
        match registry.register_process(registration(job, variant)).await {
            Ok(record) => {
                ensure!(winner.is_none_or(|won| won == variant), "retried {variant:?} succeeded over {winner:?}");
                ensure!(variant_of(&record) == Some(variant), "retried {variant:?} answered {:?}", record.input);
                winner = Some(variant);
            }
            Err(RegistryError::RegistrationConflict { .. }) if winner.is_some_and(|won| won != variant) => {}
            Err(error) => return Err(format!("retrying registration {variant:?} failed: {error}")),
        }
    }
    Ok(())
}

async fn events_of(registry: &ActorProcessRegistry, process: &str) -> Result<Vec<ProcessEvent>, String> {
    registry.events_after(process, 0).await.map_err(|error| format!("events_after failed: {error}"))
}

/// The log is gapless from 1, every event is one the workload sent, whole,
/// once, and every acknowledged append is at its acknowledged sequence.
fn check_log(job: u64, ledger: &JobLedger, events: &[ProcessEvent]) -> Result<(), String> {
    let process = process_id(job);
    let by_key: BTreeMap<String, Append> = appends(job).map(|append| (replay_key(job, append), append)).collect();
    let mut seen = BTreeSet::new();
    for (at, event) in events.iter().enumerate() {
        ensure!(
            event.sequence == at as u64 + 1,
            "sequence {} at position {}: the log has a gap",
            event.sequence,
            at + 1
        );
        ensure!(event.process_id == process, "event {} names process {}", event.sequence, event.process_id);
        let Some(key) = event.invocation.replay_key.clone() else {
            return Err(format!("event {} has no replay key", event.sequence));
        };
        ensure!(seen.insert(key.clone()), "key {key} has two events");
        if let Some(&append) = by_key.get(&key) {
            ensure!(ledger.appends_begun.contains(&append), "event {} of {append:?} was never sent", event.sequence);
            let expected = append_request(job, append);
            ensure!(
                event.event_type == expected.event_type && event.payload == expected.payload,
                "event {} of {append:?} is not what was sent: {} {}",
                event.sequence,
                event.event_type,
                event.payload
            );
        } else {
            let output = outcome(job).filter(|output| terminal_key(job, output) == key);
            let Some(output) = output else {
                return Err(format!("event {} has key {key}, which the workload never sends", event.sequence));
            };
            ensure!(ledger.complete.begun(), "terminal event {} was never asked for", event.sequence);
            ensure!(
                event.payload == json!({"await_output": output})
                    && event.semantics.terminal.as_ref().map(|terminal| &terminal.await_output) == Some(&output),
                "terminal event {} is not the one sent: {}",
                event.sequence,
                event.payload
            );
        }
    }
    for (append, &sequence) in &ledger.appended {
        let key = replay_key(job, *append);
        let at = usize::try_from(sequence.saturating_sub(1)).unwrap_or(usize::MAX);
        let found = events.get(at).and_then(|event| event.invocation.replay_key.as_deref());
        ensure!(found == Some(key.as_str()), "acknowledged {append:?} at {sequence} is lost (found {found:?})");
    }
    Ok(())
}

/// Terminal exactly when the log holds the terminal event; an acknowledged
/// completion and external ref are in the record.
fn check_record(job: u64, ledger: &JobLedger, record: &ProcessRecord, events: &[ProcessEvent]) -> Result<(), String> {
    let terminal_event = events.iter().find(|event| event.is_terminal());
    let output = record.status.await_output();
    match terminal_event {
        Some(event) => ensure!(
            event.semantics.terminal.as_ref().map(|terminal| &terminal.await_output) == output,
            "the log ends the process with event {} but the record says {:?}",
            event.sequence,
            record.status
        ),
        None => ensure!(output.is_none(), "terminal status {:?} without a terminal event", record.status),
    }
    if ledger.complete == Progress::Acked {
        ensure!(output == outcome(job).as_ref(), "the acknowledged completion is lost: {:?}", record.status);
    }
    match ledger.external_ref {
        Progress::Acked => ensure!(
            record.external_ref.as_ref() == Some(&external_ref(job)),
            "the acknowledged external ref is lost: {:?}",
            record.external_ref
        ),
        Progress::Begun => ensure!(
            record.external_ref.is_none() || record.external_ref.as_ref() == Some(&external_ref(job)),
            "a foreign external ref: {:?}",
            record.external_ref
        ),
        Progress::NotBegun => ensure!(record.external_ref.is_none(), "an external ref nobody set"),
    }
    Ok(())
}

/// Whatever a read or a waiter was shown before the kill is still there.
fn check_sights(ledger: &JobLedger, record: &ProcessRecord, events: &[ProcessEvent]) -> Result<(), String> {
    for sight in &ledger.sights {
        match sight {
            Sight::Event { sequence, key } => {
                let at = usize::try_from(sequence.saturating_sub(1)).unwrap_or(usize::MAX);
                let found = events.get(at).map(|event| &event.invocation.replay_key);
                ensure!(found == Some(key), "a reader saw event {sequence} ({key:?}); after the kill it is {found:?}");
            }
            Sight::Terminal { output } => ensure!(
                record.status.await_output() == Some(output),
                "await_process returned {output:?}; after the kill the status is {:?}",
                record.status
            ),
        }
    }
    Ok(())
}

/// An acknowledged wake ack hides its wake; a wake nobody acked is listed.
async fn check_wake_acks(
    registry: &ActorProcessRegistry,
    job: u64,
    ledger: &JobLedger,
    events: &[ProcessEvent],
) -> Result<(), String> {
    let wakes: BTreeSet<u64> = registry
        .wake_events_after(&process_id(job), 0)
        .await
        .map_err(|error| format!("wake_events_after failed: {error}"))?
        .iter()
        .map(|event| event.sequence)
        .collect();
    let pings: BTreeSet<u64> = events.iter().filter(|event| event.is_wake()).map(|event| event.sequence).collect();
    for sequence in &pings {
        if ledger.wake_acked.contains(sequence) {
            ensure!(!wakes.contains(sequence), "the acknowledged ack of wake {sequence} is lost");
        } else if !ledger.wake_acks_begun.contains(sequence) {
            ensure!(wakes.contains(sequence), "wake {sequence} was acked by nobody but is not listed");
        }
    }
    Ok(())
}

/// The grants are the state after the acknowledged prefix of the chain, or
/// after the one step in flight.
async fn check_grants(registry: &ActorProcessRegistry, job: u64, ledger: &JobLedger) -> Result<(), String> {
    let process = process_id(job);
    let chain = grant_chain(job);
    let mut states = vec![GrantState::new()];
    for op in &chain {
        let mut next = states.last().cloned().unwrap_or_default();
        apply_grant(&mut next, op);
        states.push(next);
    }
    let allowed: Vec<&GrantState> =
        (ledger.grants_acked..=ledger.grants_begun).filter_map(|at| states.get(at)).collect();
    let mut found = GrantState::new();
    for scope in grant_scopes(job) {
        let entries =
            registry.list_handle_grants(&scope).await.map_err(|error| format!("list_handle_grants failed: {error}"))?;
        for (grant, _) in entries.into_iter().filter(|(grant, _)| grant.process_id == process) {
            ensure!(grant.descriptor.kind.as_deref() == Some("crash"), "a foreign descriptor {:?}", grant.descriptor);
            found.insert(scope.id().0, grant.descriptor.label.unwrap_or_default());
        }
    }
    ensure!(
        allowed.contains(&&found),
        "grants {found:?} after {} acknowledged of {} begun grant steps; allowed: {allowed:?}",
        ledger.grants_acked,
        ledger.grants_begun
    );
    Ok(())
}

/// An acknowledged lease renews, an acknowledged release stays released,
/// and a new claim is fenced above every token handed out.
async fn check_leases(
    registry: &ActorProcessRegistry,
    job: u64,
    ledger: &JobLedger,
    record: &ProcessRecord,
) -> Result<Checked, String> {
    let process = process_id(job);
    let chain = lease_chain(job);
    let mut floor = ledger.leases.iter().flatten().map(|lease| lease.fencing_token).max().unwrap_or(0);
    let last_held = ledger.leases.iter().rev().flatten().next();
    let in_flight = chain.get(ledger.leases.len()).filter(|_| ledger.lease_begun > ledger.leases.len());
    match (ledger.leases.last(), in_flight) {
        // The acknowledged lease is current: nothing after it, or only a
        // renewal (which keeps its token).
        (Some(Some(lease)), None | Some(LeaseOp::Renew)) => {
            let renewed = registry
                .renew_process_lease(lease, LEASE_TTL_MS)
                .await
                .map_err(|error| format!("the acknowledged lease {} does not renew: {error}", lease.fencing_token))?;
            ensure!(renewed.fencing_token == lease.fencing_token, "renewal changed the fencing token");
        }
        // Released, and nothing claimed since: the released lease is dead.
        (Some(None), None) => {
            let released = last_held.ok_or("a release without a lease before it")?;
            match registry.renew_process_lease(released, LEASE_TTL_MS).await {
                Err(RegistryError::LeaseMissingOrExpired { .. }) => {}
                other => return Err(format!("the acknowledged release is lost: renewing answered {other:?}")),
            }
        }
        _ => {}
    }
    if record.is_terminal() {
        match registry.claim_process_lease(&process, &owner(job), LEASE_TTL_MS).await {
            Err(RegistryError::AlreadyTerminal { .. }) => {}
            other => return Err(format!("claiming a terminal process answered {other:?}")),
        }
    } else {
        let claimed = registry
            .claim_process_lease(&process, &owner(job), LEASE_TTL_MS)
            .await
            .map_err(|error| format!("claiming after the crash failed: {error}"))?;
        ensure!(
            claimed.fencing_token > floor,
            "the claim after the crash got fencing token {}, not above {floor}",
            claimed.fencing_token
        );
        floor = claimed.fencing_token;
    }
    Ok(Checked { fencing_floor: floor })
}

/// The file itself, read-only, after the registry is shut down: SQLite's
/// integrity check, gapless sequences, and fencing tokens at their floors.
fn check_file(path: &Path, floors: &BTreeMap<String, u64>) -> Vec<String> {
    let result = (|| -> Result<Vec<String>, rusqlite::Error> {
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut findings = Vec::new();
        let integrity: Vec<String> =
            connection.prepare("PRAGMA integrity_check")?.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
        if integrity != ["ok"] {
            findings.push(format!("integrity_check: {integrity:?}"));
        }
        let processes: Vec<(String, i64, Option<String>)> = connection
            .prepare("SELECT id, last_sequence, lease FROM processes ORDER BY id")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut sequences =
            connection.prepare("SELECT sequence FROM events WHERE process_id = ?1 ORDER BY sequence")?;
        for (id, last_sequence, lease) in processes {
            let stored: Vec<i64> = sequences.query_map([&id], |row| row.get(0))?.collect::<Result<_, _>>()?;
            if stored != (1..=last_sequence).collect::<Vec<_>>() {
                findings.push(format!("{id}: the file holds sequences {stored:?} with last_sequence {last_sequence}"));
            }
            let token = match lease.as_deref().map(serde_json::from_str::<LeaseState>) {
                None => 0,
                Some(Ok(state)) => state.last_fencing_token,
                Some(Err(error)) => {
                    findings.push(format!("{id}: the stored lease does not parse: {error}"));
                    continue;
                }
            };
            let floor = floors.get(&id).copied().unwrap_or(0);
            if token < floor {
                findings.push(format!("{id}: the file's fencing token {token} is below {floor}, already handed out"));
            }
        }
        Ok(findings)
    })();
    result.unwrap_or_else(|error| vec![format!("reading the file failed: {error}")])
}

/// Kills a child running the workload at a random moment, reopens the file
/// and checks every acknowledged call is there, whole, and nothing else is
/// half there; for `PROCESS_REGISTRY_CRASH_ROUNDS` rounds (default 3).
#[test]
fn acknowledged_calls_survive_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let rounds = env_number(ROUNDS_ENV).unwrap_or(DEFAULT_ROUNDS);
    let seed = env_number(SEED_ENV).unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
        (now as u64) ^ u64::from(std::process::id())
    });
    println!("sqlite_crash: {rounds} rounds, seed {seed} (replay with {SEED_ENV}={seed})");
    let mut random = XorShift::new(seed);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for round in 1..=rounds {
        let delay = Duration::from_millis(random.between(KILL_AFTER_MS.0, KILL_AFTER_MS.1));
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("registry.db");
        let context = format!("round {round} of seed {seed}, killed {} ms after the first ack", delay.as_millis());
        let lines = run_child_until_killed(&path, delay).unwrap_or_else(|error| panic!("{context}: {error}"));
        let jobs = Arc::new(jobs_of(&lines).unwrap_or_else(|error| panic!("{context}: the ledger: {error}")));
        let checks = runtime.spawn(check_reopened(path.clone(), Arc::clone(&jobs)));
        let (floors, mut findings) = runtime.block_on(checks).expect("the checks ran");
        findings.extend(check_file(&path, &floors));
        let mut kinds = [0; 7];
        for job in jobs.values() {
            kinds.iter_mut().zip(job.acked()).for_each(|(total, acked)| *total += acked);
        }
        let acked: usize = kinds.iter().sum();
        let in_flight: usize = jobs.values().map(JobLedger::in_flight).sum();
        let sights: usize = jobs.values().map(|job| job.sights.len()).sum();
        let [registrations, appends, external_refs, wake_acks, grants, leases, completions] = kinds;
        println!(
            "sqlite_crash: {context}: {} jobs; {acked} calls acknowledged ({registrations} registrations, \
             {appends} appends, {external_refs} external refs, {wake_acks} wake acks, {grants} grant changes, \
             {leases} lease changes, {completions} completions), {sights} reads seen, {in_flight} in flight; \
             {} findings",
            jobs.len(),
            findings.len()
        );
        assert!(acked > 0, "{context}: nothing was acknowledged, so nothing was tested");
        assert!(
            findings.is_empty(),
            "{context}: {} findings:\n{}",
            findings.len(),
            findings.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}
