//! The [`ProcessWorker`] contract.
//!
//! Pins:
//! - exactly once under racing workers: four workers over one registry run
//!   every process's handler to completion exactly once (counted by a
//!   ledger outside the registry), every process ends with its handler's
//!   output, and the workers' `completed` counters add up to the processes;
//! - crash and takeover: a dropped worker releases nothing; its processes
//!   stay leased until their ttl (another worker claims none of them
//!   before), then are taken over under fencing token 2, the new run sees
//!   the steps the crashed run recorded, and the crashed run's late writes
//!   are refused with `LeaseFenced`;
//! - a context clone kept by a task the handler spawned is cancelled when
//!   its attempt ends;
//! - handler failures: errors are retried per `HandlerPolicy` and counted,
//!   the last one fails the process with `handler_error`; a panic fails it
//!   with `handler_panicked` (or is retried) and the worker keeps working;
//! - shutdown: handlers finishing within the deadline complete, the others
//!   are cancelled, counted `abandoned`, left non-terminal, and their leases
//!   released (another owner claims at once, with the clock not moved);
//! - a lost lease (renewal refused after a takeover) cancels the handler,
//!   is counted `lost`, and its late completion is refused; a renewal the
//!   store fails to commit cancels it too, counted `abandoned`;
//! - `start` refuses an invalid configuration, and a call outside a tokio
//!   runtime, with `InvalidConfig` and without panicking;
//! - `ProcessContext::recorded` shows a later attempt the steps an earlier
//!   one recorded.
//!
//! Lease time is a `ManualClock` advanced by the tests; nothing sleeps for
//! a lease to expire. The worker's own timers (sweeps, renewals, backoff)
//! run on tokio time and are set short. Every wait is for a condition,
//! bounded by a generous timeout; nothing is timed.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use process_registry::store::StoreFaultsHandle;
use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::worker::{HandlerPolicy, ProcessContext, ProcessWorker, WorkerConfig, WorkerStats};
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ManualClock, ProcessAwaitOutput, ProcessEventAppendRequest,
    ProcessEventType, ProcessInput, ProcessRegistration, ProcessRegistry, ProcessStatus, RegistryConfig, RegistryError,
    SqliteOptions, WaitKind, WaitState,
};
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// The bound on every wait for a condition (never a measurement).
const PATIENCE: Duration = Duration::from_secs(120);
/// Where every manual clock starts.
const START_MS: u64 = 1_700_000_000_000;
/// Processes in the exactly-once race unless `PROCESS_REGISTRY_WORKER_PROCESSES` says otherwise.
const DEFAULT_RACE_PROCESSES: usize = 10_000;

// ---------------------------------------------------------------- helpers

/// A process of definition `job` that declares a `step` event type.
fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types([ProcessEventType::new("step", json!({"type": "object"}))])
}

fn step(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("step", json!({ "n": n }))
}

async fn start_registry(clock: Option<Arc<ManualClock>>) -> ActorProcessRegistry {
    let config = match clock {
        Some(clock) => RegistryConfig::default().with_clock(clock),
        None => RegistryConfig::default(),
    };
    ActorProcessRegistry::start(config).await.expect("the registry starts")
}

async fn register(registry: &ActorProcessRegistry, ids: &[&str]) {
    for id in ids {
        registry.register_process(registration(id)).await.expect("register");
    }
}

fn fenced(registry: &ActorProcessRegistry) -> Arc<dyn FencedProcessRegistry> {
    Arc::new(registry.clone())
}

/// A worker configuration with short tokio-time timers and a long lease.
fn config(owner: &str) -> WorkerConfig {
    WorkerConfig {
        lease_ttl: Duration::from_secs(60),
        sweep_interval: Duration::from_millis(20),
        ..WorkerConfig::new(owner)
    }
}

/// Polls `condition` until it holds, at most [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: still not true after {PATIENCE:?}");
}

/// The process's outcome, waited for at most [`PATIENCE`].
async fn outcome(registry: &ActorProcessRegistry, id: &str) -> ProcessAwaitOutput {
    tokio::time::timeout(PATIENCE, registry.await_process(id))
        .await
        .unwrap_or_else(|_| panic!("`{id}` did not end within {PATIENCE:?}"))
        .expect("await_process")
}

/// The next value from `receiver`, waited for at most [`PATIENCE`].
async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(PATIENCE, receiver.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {PATIENCE:?}"))
        .unwrap_or_else(|| panic!("{what}: the channel closed"))
}

/// Counts the handler futures dropped (finished or aborted).
struct DropCounter(Arc<AtomicU64>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn is_fenced(result: &Result<impl std::fmt::Debug, RegistryError>, presented: u64, current: Option<u64>) -> bool {
    matches!(
        result,
        Err(RegistryError::LeaseFenced { presented_fencing_token, current_fencing_token, .. })
            if *presented_fencing_token == presented && *current_fencing_token == current
    )
}

/// `attempts` runs with a 1 ms initial backoff.
fn retry(attempts: u32) -> HandlerPolicy {
    HandlerPolicy::retry(attempts, Duration::from_millis(1))
}

fn failure_code(output: &ProcessAwaitOutput) -> Option<&str> {
    match output {
        ProcessAwaitOutput::Failure { code, .. } => Some(code),
        _ => None,
    }
}

// ---------------------------------------------------- exactly once, racing

fn race_processes() -> usize {
    match std::env::var("PROCESS_REGISTRY_WORKER_PROCESSES") {
        Ok(text) => text.trim().replace('_', "").parse().expect("PROCESS_REGISTRY_WORKER_PROCESSES must be a count"),
        Err(_) => DEFAULT_RACE_PROCESSES,
    }
}

/// What the ledger saw of one process's handler.
#[derive(Debug, Default)]
struct Entry {
    starts: u32,
    finishes: u32,
    output: Option<ProcessAwaitOutput>,
}

type Ledger = Arc<Mutex<HashMap<String, Entry>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_racing_workers_run_every_handler_to_completion_exactly_once() {
    let count = race_processes();
    let registry = start_registry(None).await;
    let ids: Arc<Vec<String>> = Arc::new((0..count).map(|n| format!("job-{n:05}")).collect());
    let mut registrations = Vec::new();
    for part in 0..8 {
        let (registry, ids) = (registry.clone(), Arc::clone(&ids));
        registrations.push(tokio::spawn(async move {
            for id in ids.iter().skip(part).step_by(8) {
                registry.register_process(registration(id)).await.expect("register");
            }
        }));
    }
    for registering in registrations {
        registering.await.expect("registration task");
    }

    let ledger: Ledger = Arc::default();
    let mut workers = Vec::new();
    for n in 0..4 {
        let ledger = Arc::clone(&ledger);
        let config = WorkerConfig { concurrency: 32, ..config(&format!("worker-{n}")) };
        let worker = ProcessWorker::builder(fenced(&registry), config)
            .handler("job", move |ctx: ProcessContext| {
                let ledger = Arc::clone(&ledger);
                async move {
                    let id = ctx.process_id().to_owned();
                    ledger.lock().expect("ledger").entry(id.clone()).or_default().starts += 1;
                    ctx.append(step(1)).await?;
                    let output = ProcessAwaitOutput::success(json!({"id": id, "by": ctx.lease().owner_id}));
                    let mut ledger = ledger.lock().expect("ledger");
                    let entry = ledger.entry(id).or_default();
                    entry.finishes += 1;
                    entry.output = Some(output.clone());
                    Ok::<_, RegistryError>(output)
                }
            })
            .start()
            .expect("the worker starts");
        workers.push(worker);
    }

    let drained = tokio::time::timeout(PATIENCE, async {
        while !registry.list_non_terminal().await.expect("list").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(drained.is_ok(), "processes still running after {PATIENCE:?}");
    let mut stats: Vec<WorkerStats> = Vec::new();
    for worker in workers {
        stats.push(worker.shutdown(PATIENCE).await);
    }

    let total = |field: fn(&WorkerStats) -> u64| stats.iter().map(field).sum::<u64>();
    let count = count as u64;
    assert_eq!(total(|s| s.completed), count, "completed, summed over the workers: {stats:#?}");
    assert_eq!(total(|s| s.claimed), count, "one claim per process: {stats:#?}");
    assert_eq!(total(|s| s.runs), count, "one run per process: {stats:#?}");
    for (name, value) in [
        ("failed", total(|s| s.failed)),
        ("handler_errors", total(|s| s.handler_errors)),
        ("handler_panics", total(|s| s.handler_panics)),
        ("lost", total(|s| s.lost)),
        ("abandoned", total(|s| s.abandoned)),
        ("running", total(|s| s.running)),
    ] {
        assert_eq!(value, 0, "{name}: {stats:#?}");
    }
    assert!(stats.iter().filter(|s| s.completed > 0).count() >= 2, "the workers did race: {stats:#?}");

    // Every handler has finished: take the ledger out of its mutex.
    let ledger = std::mem::take(&mut *ledger.lock().expect("ledger"));
    assert_eq!(ledger.len() as u64, count, "every handler ran");
    for id in ids.iter() {
        let entry = ledger.get(id).unwrap_or_else(|| panic!("`{id}`'s handler never ran"));
        assert_eq!((entry.starts, entry.finishes), (1, 1), "`{id}` ran exactly once to completion");
        let record = registry.get_process(id).await.expect("the process exists");
        let output = entry.output.clone().expect("a finished handler's output");
        assert_eq!(record.status, ProcessStatus::Completed { await_output: output }, "`{id}`");
        let log = registry.events_after(id, 0).await.expect("log");
        assert_eq!(log.iter().filter(|event| event.event_type == "step").count(), 1, "`{id}`: one step");
    }
    registry.shutdown().await;
}

// ------------------------------------------------------- crash, takeover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_taken_over_after_its_ttl_and_its_late_writes_are_fenced() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = start_registry(Some(Arc::clone(&clock))).await;
    let ids = ["a", "b", "c"];
    register(&registry, &ids).await;

    // The first worker records a step, hands its context out, and hangs.
    let (first_runs, mut first_contexts) = mpsc::unbounded_channel::<ProcessContext>();
    let dropped = Arc::new(AtomicU64::new(0));
    let first = {
        let dropped = Arc::clone(&dropped);
        ProcessWorker::builder(fenced(&registry), config("worker-1"))
            .handler("job", move |ctx: ProcessContext| {
                let (runs, dropped) = (first_runs.clone(), Arc::clone(&dropped));
                async move {
                    let _counted = DropCounter(dropped);
                    ctx.append(step(1).with_replay_key("step-1")).await?;
                    runs.send(ctx.clone()).expect("the test listens");
                    std::future::pending::<()>().await;
                    Ok::<_, RegistryError>(ProcessAwaitOutput::success(json!("never")))
                }
            })
            .start()
            .expect("the first worker starts")
    };
    let mut stale = Vec::new();
    for _ in ids {
        stale.push(next(&mut first_contexts, "the first worker's runs").await);
    }
    assert!(stale.iter().all(|ctx| ctx.fencing_token() == 1 && ctx.lease().owner_id == "worker-1"));

    // The crash: its handlers stop, its leases stay.
    drop(first);
    eventually("the crashed worker's handlers are dropped", || dropped.load(Ordering::SeqCst) == 3).await;
    assert!(stale.iter().all(ProcessContext::is_cancelled), "a context that escaped its handler sees the crash");

    let (second_runs, mut second_contexts) = mpsc::unbounded_channel::<(ProcessContext, bool)>();
    let (go, go_signal) = watch::channel(false);
    let second = ProcessWorker::builder(fenced(&registry), config("worker-2"))
        .handler("job", move |ctx: ProcessContext| {
            let (runs, mut go) = (second_runs.clone(), go_signal.clone());
            async move {
                runs.send((ctx.clone(), ctx.recorded("step-1").is_some())).expect("the test listens");
                go.wait_for(|go| *go).await.map_err(|error| error.to_string())?;
                Ok::<_, String>(ProcessAwaitOutput::success(json!({"fencing_token": ctx.fencing_token()})))
            }
        })
        .start()
        .expect("the second worker starts");

    // Before the ttl has passed, the second worker gets none of them.
    second.sweep_now();
    eventually("the second worker completes a sweep", || second.stats().sweeps >= 2).await;
    assert_eq!(second.stats().claimed, 0, "claimed before the crashed worker's leases expired");
    for id in ids {
        let held = registry.claim_process_lease(id, "probe", 1_000).await;
        assert!(
            matches!(&held, Err(RegistryError::LeaseHeld { owner_id, .. }) if owner_id == "worker-1"),
            "a crash releases nothing: {held:?}"
        );
    }

    clock.advance(60_000);
    second.sweep_now();
    let mut taken = BTreeSet::new();
    for _ in ids {
        let (ctx, saw_step) = next(&mut second_contexts, "the second worker's runs").await;
        assert_eq!((ctx.fencing_token(), ctx.attempt(), ctx.lease().owner_id.as_str()), (2, 1, "worker-2"));
        assert!(saw_step, "`{}`: the crashed run's recorded step is visible", ctx.process_id());
        taken.insert(ctx.process_id().to_owned());
    }
    assert_eq!(taken, ids.iter().map(|id| (*id).to_owned()).collect::<BTreeSet<_>>());

    // The crashed run's late writes, through its own contexts: all fenced.
    for ctx in &stale {
        let logged = registry.events_after(ctx.process_id(), 0).await.expect("log");
        assert!(is_fenced(&ctx.append(step(2)).await, 1, Some(2)), "a late append");
        let wait = WaitState {
            kind: WaitKind::Signal { name: "go".into(), event_type: "step".into(), key: "k".into(), ordinal: 1 },
            since_ms: START_MS,
        };
        assert!(is_fenced(&ctx.set_wait(wait).await, 1, Some(2)), "a late set_wait");
        let late = ctx.registry().complete_process_fenced(ctx.lease(), ProcessAwaitOutput::success(json!("late")));
        assert!(is_fenced(&late.await, 1, Some(2)), "a late completion");
        assert_eq!(
            registry.events_after(ctx.process_id(), 0).await.expect("log"),
            logged,
            "late writes changed nothing"
        );
    }

    go.send(true).expect("the second worker's handlers listen");
    for id in ids {
        assert_eq!(outcome(&registry, id).await, ProcessAwaitOutput::success(json!({"fencing_token": 2})));
        let steps = registry.events_after(id, 0).await.expect("log");
        assert_eq!(steps.len(), 2, "`{id}`: the crashed run's step and the new owner's completion");
    }
    let stats = second.shutdown(PATIENCE).await;
    assert_eq!((stats.claimed, stats.completed, stats.lost), (3, 3, 0), "{stats:#?}");
    registry.shutdown().await;
}

// -------------------------------------------------------- handler errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_twice_then_succeeding_completes_after_two_retries() {
    let registry = start_registry(None).await;
    register(&registry, &["flaky"]).await;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let attempts = Arc::clone(&attempts);
        ProcessWorker::builder(fenced(&registry), config("worker"))
            .handler_with_policy("job", retry(3), move |ctx: ProcessContext| {
                let attempts = Arc::clone(&attempts);
                async move {
                    attempts.lock().expect("attempts").push(ctx.attempt());
                    if ctx.attempt() < 3 {
                        return Err(format!("attempt {} fails", ctx.attempt()));
                    }
                    Ok(ProcessAwaitOutput::success(json!({"attempt": ctx.attempt()})))
                }
            })
            .start()
            .expect("the worker starts")
    };
    assert_eq!(outcome(&registry, "flaky").await, ProcessAwaitOutput::success(json!({"attempt": 3})));
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!(*attempts.lock().expect("attempts"), [1, 2, 3]);
    assert_eq!((stats.runs, stats.retries, stats.handler_errors), (3, 2, 2), "{stats:#?}");
    assert_eq!((stats.claimed, stats.completed, stats.failed), (1, 1, 0), "{stats:#?}");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_kept_by_a_spawned_task_is_cancelled_when_its_attempt_ends() {
    let registry = start_registry(None).await;
    register(&registry, &["p"]).await;
    let (ended, mut ends) = mpsc::unbounded_channel::<u32>();
    let worker = ProcessWorker::builder(fenced(&registry), config("worker"))
        .handler_with_policy("job", retry(2), move |ctx: ProcessContext| {
            let ended = ended.clone();
            async move {
                // Each attempt leaves a task behind that outlives it.
                let kept = ctx.clone();
                tokio::spawn(async move {
                    kept.cancelled().await;
                    let _ = ended.send(kept.attempt());
                });
                if ctx.attempt() == 1 {
                    return Err("the first attempt fails".to_owned());
                }
                Ok(ProcessAwaitOutput::success(json!("done")))
            }
        })
        .start()
        .expect("the worker starts");
    // The first attempt's task hears of its end while the second runs or
    // after; the second's once the process is completed.
    let mut heard = vec![next(&mut ends, "attempt 1 is over").await, next(&mut ends, "attempt 2 is over").await];
    heard.sort_unstable();
    assert_eq!(heard, [1, 2]);
    assert_eq!(outcome(&registry, "p").await, ProcessAwaitOutput::success(json!("done")));
    worker.shutdown(PATIENCE).await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_always_failing_fails_its_process_after_exactly_its_attempts() {
    let registry = start_registry(None).await;
    register(&registry, &["broken"]).await;
    let runs = Arc::new(AtomicU64::new(0));
    let worker = {
        let runs = Arc::clone(&runs);
        ProcessWorker::builder(fenced(&registry), config("worker"))
            .handler_with_policy("job", retry(3), move |ctx: ProcessContext| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Err::<ProcessAwaitOutput, _>(format!("attempt {} fails", ctx.attempt()))
                }
            })
            .start()
            .expect("the worker starts")
    };
    let output = outcome(&registry, "broken").await;
    assert_eq!(output, ProcessAwaitOutput::failure("handler_error", "attempt 3 fails"));
    let record = registry.get_process("broken").await.expect("exists");
    assert_eq!(record.status, ProcessStatus::Failed { await_output: output });
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "exactly three runs");
    assert_eq!((stats.runs, stats.retries, stats.handler_errors), (3, 2, 3), "{stats:#?}");
    assert_eq!((stats.claimed, stats.completed, stats.failed), (1, 0, 1), "{stats:#?}");
    registry.shutdown().await;
}

/// An outcome the registry refuses to store (here: larger than its payload
/// limit) fails the process with `completion_refused`; it is not released
/// to be claimed and run again at every sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_the_registry_refuses_fails_its_process_instead_of_running_it_again() {
    let limits = process_registry::Limits { max_payload_bytes: 4_096, ..process_registry::Limits::default() };
    let registry = ActorProcessRegistry::start(RegistryConfig::default().with_limits(limits)).await.expect("start");
    register(&registry, &["oversized"]).await;
    let runs = Arc::new(AtomicU64::new(0));
    let worker = {
        let runs = Arc::clone(&runs);
        ProcessWorker::builder(fenced(&registry), config("worker"))
            .handler("job", move |_ctx: ProcessContext| {
                let runs = Arc::clone(&runs);
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(ProcessAwaitOutput::success(json!("x".repeat(10_000))))
                }
            })
            .start()
            .expect("the worker starts")
    };
    let output = outcome(&registry, "oversized").await;
    assert_eq!(failure_code(&output), Some("completion_refused"), "{output:?}");
    // Sweeps keep running; the failed process is not claimed again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
    assert_eq!((stats.claimed, stats.completed, stats.failed, stats.lost), (1, 0, 1, 0), "{stats:#?}");
    registry.shutdown().await;
}

// ---------------------------------------------------------------- panics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_process_and_the_worker_keeps_working() {
    let registry = start_registry(None).await;
    let others: Vec<String> = (0..10).map(|n| format!("ok-{n}")).collect();
    register(&registry, &["boom"]).await;
    register(&registry, &others.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let worker = ProcessWorker::builder(fenced(&registry), WorkerConfig { concurrency: 2, ..config("worker") })
        .handler("job", |ctx: ProcessContext| async move {
            if ctx.process_id() == "boom" {
                panic!("the handler of boom panics");
            }
            Ok::<_, String>(ProcessAwaitOutput::success(json!(ctx.process_id())))
        })
        .start()
        .expect("the worker starts");

    let output = outcome(&registry, "boom").await;
    assert_eq!(failure_code(&output), Some("handler_panicked"), "{output:?}");
    assert!(format!("{output:?}").contains("the handler of boom panics"), "the panic message is kept: {output:?}");
    for id in &others {
        assert_eq!(outcome(&registry, id).await, ProcessAwaitOutput::success(json!(id)));
    }
    // Still working after the panic: a new registration is run too.
    register(&registry, &["late"]).await;
    assert_eq!(outcome(&registry, "late").await, ProcessAwaitOutput::success(json!("late")));
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!((stats.handler_panics, stats.failed, stats.completed), (1, 1, 11), "{stats:#?}");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panicking_once_succeeds_on_its_retry() {
    let registry = start_registry(None).await;
    register(&registry, &["p"]).await;
    let worker = ProcessWorker::builder(fenced(&registry), config("worker"))
        .handler_with_policy("job", retry(2), |ctx: ProcessContext| async move {
            if ctx.attempt() == 1 {
                panic!("the first run panics");
            }
            Ok::<_, String>(ProcessAwaitOutput::success(json!({"attempt": ctx.attempt()})))
        })
        .start()
        .expect("the worker starts");
    assert_eq!(outcome(&registry, "p").await, ProcessAwaitOutput::success(json!({"attempt": 2})));
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!((stats.handler_panics, stats.retries, stats.completed, stats.failed), (1, 1, 1, 0), "{stats:#?}");
    registry.shutdown().await;
}

/// A handler is a function returning a future: a panic in the function
/// itself, before any future exists, is the handler's panic too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panicking_before_it_returns_its_future_fails_its_process() {
    let registry = start_registry(None).await;
    register(&registry, &["boom", "ok"]).await;
    let worker = ProcessWorker::builder(fenced(&registry), config("worker"))
        .handler("job", |ctx: ProcessContext| {
            assert_ne!(ctx.process_id(), "boom", "the handler of boom panics at once");
            async move { Ok::<_, String>(ProcessAwaitOutput::success(json!(ctx.process_id()))) }
        })
        .start()
        .expect("the worker starts");
    let output = outcome(&registry, "boom").await;
    assert_eq!(failure_code(&output), Some("handler_panicked"), "{output:?}");
    assert_eq!(outcome(&registry, "ok").await, ProcessAwaitOutput::success(json!("ok")));
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!((stats.handler_panics, stats.failed, stats.completed, stats.running), (1, 1, 1, 0), "{stats:#?}");
    registry.shutdown().await;
}

// -------------------------------------------------------------- shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_completes_finishing_handlers_and_abandons_and_releases_the_rest() {
    // The clock never moves: a claim by another owner afterwards succeeds
    // only because the leases were released.
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = start_registry(Some(clock)).await;
    let quick = ["quick-1", "quick-2"];
    let stuck = ["stuck-1", "stuck-2"];
    register(&registry, &quick).await;
    register(&registry, &stuck).await;
    let (started, mut starts) = mpsc::unbounded_channel::<String>();
    let (go, go_signal) = watch::channel(false);
    let stuck_dropped = Arc::new(AtomicU64::new(0));
    let worker = {
        let stuck_dropped = Arc::clone(&stuck_dropped);
        ProcessWorker::builder(fenced(&registry), config("worker-1"))
            .handler("job", move |ctx: ProcessContext| {
                let (started, mut go, stuck_dropped) = (started.clone(), go_signal.clone(), Arc::clone(&stuck_dropped));
                async move {
                    let id = ctx.process_id().to_owned();
                    started.send(id.clone()).expect("the test listens");
                    if id.starts_with("stuck") {
                        let _counted = DropCounter(stuck_dropped);
                        std::future::pending::<()>().await;
                    }
                    go.wait_for(|go| *go).await.map_err(|error| error.to_string())?;
                    Ok::<_, String>(ProcessAwaitOutput::success(json!(id)))
                }
            })
            .start()
            .expect("the worker starts")
    };
    let mut running = BTreeSet::new();
    for _ in 0..4 {
        running.insert(next(&mut starts, "handler starts").await);
    }
    assert_eq!(running.len(), 4);

    // Shut down with every handler in flight; the quick ones may finish.
    let shutting_down = tokio::spawn(worker.shutdown(Duration::from_secs(2)));
    go.send(true).expect("the quick handlers listen");
    let stats = tokio::time::timeout(PATIENCE, shutting_down).await.expect("shutdown ends").expect("shutdown task");
    assert_eq!((stats.completed, stats.abandoned, stats.lost, stats.running), (2, 2, 0, 0), "{stats:#?}");
    eventually("the stuck handlers are dropped", || stuck_dropped.load(Ordering::SeqCst) == 2).await;

    for id in quick {
        assert_eq!(outcome(&registry, id).await, ProcessAwaitOutput::success(json!(id)));
    }
    let left: Vec<String> = registry.list_non_terminal().await.expect("list").into_iter().map(|r| r.id).collect();
    assert_eq!(left, stuck, "the abandoned processes stay non-terminal");
    for id in stuck {
        let lease = registry.claim_process_lease(id, "worker-2", 60_000).await.expect("released: claimable at once");
        assert_eq!(lease.fencing_token, 2);
        assert!(registry.events_after(id, 0).await.expect("log").is_empty(), "`{id}`: nothing was written");
    }
    registry.shutdown().await;
}

// ------------------------------------------------------------ lost lease

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_handler_and_its_late_completion_is_refused() {
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = start_registry(Some(Arc::clone(&clock))).await;
    register(&registry, &["p"]).await;
    let (started, mut starts) = mpsc::unbounded_channel::<ProcessContext>();
    let (cancelled, mut cancellations) = mpsc::unbounded_channel::<()>();
    // One sweep only (at start): after the loss the worker must not
    // reclaim the process itself.
    let config = WorkerConfig {
        lease_ttl: Duration::from_secs(10),
        renew_interval: Some(Duration::from_millis(20)),
        sweep_interval: Duration::from_secs(3_600),
        ..WorkerConfig::new("worker-1")
    };
    let worker = ProcessWorker::builder(fenced(&registry), config)
        .handler("job", move |ctx: ProcessContext| {
            let (started, cancelled) = (started.clone(), cancelled.clone());
            async move {
                started.send(ctx.clone()).expect("the test listens");
                ctx.cancelled().await;
                cancelled.send(()).expect("the test listens");
                Ok::<_, String>(ProcessAwaitOutput::success(json!("late")))
            }
        })
        .start()
        .expect("the worker starts");
    let ctx = next(&mut starts, "the handler starts").await;
    assert_eq!(ctx.fencing_token(), 1);
    eventually("the lease is renewed while live", || worker.stats().renewals >= 1).await;
    assert!(!ctx.is_cancelled());

    clock.advance(20_000);
    let intruder = registry.claim_process_lease("p", "intruder", 60_000).await.expect("takeover after expiry");
    assert_eq!(intruder.fencing_token, 2);
    next(&mut cancellations, "the handler is cancelled").await;
    assert!(ctx.is_cancelled());
    eventually("the loss is counted", || worker.stats().lost == 1 && worker.stats().running == 0).await;

    let record = registry.get_process("p").await.expect("exists");
    assert_eq!(record.status, ProcessStatus::Running, "the late completion was refused");
    assert!(registry.events_after("p", 0).await.expect("log").is_empty());
    // The intruder's lease is untouched by the loser's release.
    registry.append_event_fenced(&intruder, step(1)).await.expect("the new owner writes");
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!((stats.lost, stats.completed, stats.failed, stats.claimed), (1, 0, 0, 1), "{stats:#?}");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_during_a_run_gives_the_process_back_instead_of_counting_it_lost() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let faults = StoreFaultsHandle::default();
    let options = SqliteOptions { faults: faults.clone(), ..SqliteOptions::default() };
    let registry =
        ActorProcessRegistry::open_with(directory.path().join("registry.db"), options, RegistryConfig::default())
            .await
            .expect("open");
    register(&registry, &["p"]).await;
    let (started, mut starts) = mpsc::unbounded_channel::<()>();
    let config = WorkerConfig {
        renew_interval: Some(Duration::from_millis(20)),
        sweep_interval: Duration::from_secs(3_600),
        cancel_grace: Duration::from_millis(10),
        ..config("worker-1")
    };
    // The handler never ends on its own: its run stops only by the renewal.
    let worker = ProcessWorker::builder(fenced(&registry), config)
        .handler("job", move |_ctx: ProcessContext| {
            let started = started.clone();
            async move {
                started.send(()).expect("the test listens");
                std::future::pending::<Result<ProcessAwaitOutput, String>>().await
            }
        })
        .start()
        .expect("the worker starts");
    next(&mut starts, "the handler starts").await;
    eventually("the lease is renewed while live", || worker.stats().renewals >= 1).await;

    // The next renewal's commit fails: the store is poisoned, nobody took
    // the lease.
    faults.faults().fail_next_commit();
    eventually("the run ends", || worker.stats().running == 0).await;
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!((stats.abandoned, stats.lost, stats.completed, stats.failed), (1, 0, 0, 0), "{stats:#?}");
    registry.shutdown().await;
}

// ------------------------------------------------------------ validation

async fn ok_handler(ctx: ProcessContext) -> Result<ProcessAwaitOutput, String> {
    Ok(ProcessAwaitOutput::success(json!(ctx.process_id())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_an_invalid_configuration_and_claims_nothing() {
    let registry = start_registry(None).await;
    register(&registry, &["p"]).await;
    let invalid = |result: Result<ProcessWorker, RegistryError>, what: &str| {
        assert!(matches!(result, Err(RegistryError::InvalidConfig { .. })), "{what}: {result:?}");
    };
    let build = |config: WorkerConfig| ProcessWorker::builder(fenced(&registry), config);
    invalid(build(WorkerConfig { concurrency: 0, ..config("w") }).handler("job", ok_handler).start(), "concurrency 0");
    let ttl = Duration::from_secs(10);
    for renew in [ttl, ttl * 2] {
        let config = WorkerConfig { lease_ttl: ttl, renew_interval: Some(renew), ..config("w") };
        invalid(build(config).handler("job", ok_handler).start(), "renew_interval >= ttl");
    }
    // Longer than a year: the renewal timer would overflow the clock.
    let config_forever = WorkerConfig { lease_ttl: Duration::MAX, ..config("w") };
    invalid(build(config_forever).handler("job", ok_handler).start(), "lease_ttl Duration::MAX");
    invalid(build(config("w")).start(), "no handler");
    let never = HandlerPolicy { max_attempts: 0, ..HandlerPolicy::default() };
    invalid(build(config("w")).handler_with_policy("job", never, ok_handler).start(), "max_attempts 0");
    // Nothing was claimed by any of them.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lease = registry.claim_process_lease("p", "probe", 1_000).await.expect("free");
    assert_eq!(lease.fencing_token, 1, "no refused worker claimed anything");
    registry.shutdown().await;
}

#[test]
fn start_outside_a_tokio_runtime_is_invalid_config_not_a_panic() {
    let registry: Arc<dyn FencedProcessRegistry> = Arc::new(GlobalLockRegistry::new());
    let result = ProcessWorker::builder(registry, WorkerConfig::new("w")).handler("job", ok_handler).start();
    match result {
        Err(RegistryError::InvalidConfig { reason }) => assert!(reason.contains("tokio runtime"), "{reason}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

// ------------------------------------------------------ recorded steps

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_recorded_in_one_attempt_is_visible_to_the_next() {
    let registry = start_registry(None).await;
    register(&registry, &["p"]).await;
    // (attempt, sequence recorded under the key when the run started, after its own append)
    let seen = Arc::new(Mutex::new(Vec::<(u32, Option<u64>, Option<u64>)>::new()));
    let worker = {
        let seen = Arc::clone(&seen);
        ProcessWorker::builder(fenced(&registry), config("worker"))
            .handler_with_policy("job", retry(2), move |ctx: ProcessContext| {
                let seen = Arc::clone(&seen);
                async move {
                    let sequence = |ctx: &ProcessContext| ctx.recorded("step-1").map(|event| event.sequence);
                    let at_start = sequence(&ctx);
                    if at_start.is_none() {
                        ctx.append(step(1).with_replay_key("step-1")).await.map_err(|error| error.to_string())?;
                    }
                    seen.lock().expect("seen").push((ctx.attempt(), at_start, sequence(&ctx)));
                    if ctx.attempt() == 1 {
                        return Err("the first attempt fails after its step".to_owned());
                    }
                    Ok(ProcessAwaitOutput::success(json!("done")))
                }
            })
            .start()
            .expect("the worker starts")
    };
    assert_eq!(outcome(&registry, "p").await, ProcessAwaitOutput::success(json!("done")));
    let stats = worker.shutdown(PATIENCE).await;
    assert_eq!(*seen.lock().expect("seen"), [(1, None, Some(1)), (2, Some(1), Some(1))]);
    let log = registry.events_after("p", 0).await.expect("log");
    assert_eq!(log.iter().filter(|event| event.event_type == "step").count(), 1, "the step ran once");
    assert_eq!((stats.runs, stats.retries, stats.completed), (2, 1, 1), "{stats:#?}");
    registry.shutdown().await;
}
