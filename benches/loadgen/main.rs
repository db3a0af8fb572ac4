//! # loadgen: the actor registry against the global-lock baseline, in one run
//!
//! ```text
//! cargo bench --bench loadgen [-- [--json PATH] [--quick] [--smoke] [--rounds N] [--processes N]
//!                                 [--callers N] [--only PHASES] [--in-block-on]]
//! ```
//!
//! Runs every figure of the README's "Performance" section for
//! [`ActorProcessRegistry`](process_registry::ActorProcessRegistry) and for
//! the global-lock baseline
//! ([`GlobalLockRegistry`](process_registry::testing::baseline::GlobalLockRegistry)),
//! both driven through `Arc<dyn ProcessRegistry>` on one multi-thread tokio
//! runtime with 2 workers (the driver itself runs as a task on it, so
//! callers and actors share the same 2 workers). For each figure both
//! registries get their own fixture, then the rounds alternate between them
//! (actor, baseline, baseline, actor, actor, ...), so machine noise hits
//! both alike. A first round of each figure warms both up and is not
//! recorded.
//!
//! One row is not a registry of its own: `append_sequential_handoff_ceiling`
//! runs the sequential append on the baseline with one `ractor` actor in
//! front of it ([`Forwarder`](forwarder::Forwarder); its "actor" column),
//! against the bare baseline. That is the baseline's own work plus the one
//! message per call the design requires, so its ratio bounds what any
//! registry built that way can reach on the row above, in the same run.
//!
//! Throughputs are ops/s, one value per round; the table shows the median
//! over the rounds. Latencies are timed per operation with
//! [`std::time::Instant`]; the table shows p50 and p99 over all samples of
//! all rounds. The ratio is actor / baseline of the medians unless the row
//! says otherwise; each row says whether higher or lower is better.
//!
//! Six phases, any subset selectable with `--only`:
//!
//! - `figures` ([`figures`]): the per-operation figures above.
//! - `activation` ([`activation`]): activation latency. An actor registry
//!   with passivation after
//!   [`PASSIVATION_IDLE`](passivation::PASSIVATION_IDLE) registers `M`
//!   processes and calls each once (`clear_process_wait(id)`, a mutation
//!   that changes nothing), so each has had an actor; the driver waits until
//!   every actor has passivated (`live_actors == 0`, `passivations >= M`),
//!   then on each process: `events_after(id, 0)` (a cold read, answered
//!   without an actor), `clear_process_wait(id)` twice (the first, cold,
//!   activates its actor; the second, warm, finds it running) and
//!   `events_after(id, 0)` again (a warm read). The baseline has no
//!   activation: it gets the same fixture and the same calls.
//! - `memory` ([`memory`]): RSS per process, in child processes (this binary
//!   re-executed with `--memory-phase actor|baseline`), so the registries do
//!   not share an allocator history. Each registers `--processes` processes
//!   from [`LOAD_TASKS`](memory::LOAD_TASKS) concurrent tasks, settles,
//!   reads RSS ("registered, never called"), then calls `clear_process_wait(id)`
//!   once on every process; the actor child then waits until every actor
//!   has passivated. After a settle it reads RSS again ("called once"). Per
//!   process: (RSS then - RSS before registering) / processes, RSS read from
//!   `/proc/self/statm`.
//! - `flood` ([`flood`]): many callers on one process, in child processes
//!   (`--flood-phase actor|baseline`): `--callers` tasks, released at once,
//!   each append one event to ONE process; the actor registry has the
//!   default mailbox bound
//!   ([`MailboxConfig::default`](process_registry::MailboxConfig::default):
//!   1,024 calls in flight, callers beyond wait). A thread samples RSS every
//!   [`FLOOD_SAMPLE_EVERY`](flood::FLOOD_SAMPLE_EVERY); the figure is (peak
//!   RSS - RSS before the callers were spawned) / callers, which includes
//!   each caller's own task (the same on both sides) and the appended events.
//! - `listing` ([`listing`]): the recovery worklist at scale. Each registry
//!   gets 1,000,000 processes of which 1,000 stay running (the others are
//!   completed), then `list_non_terminal` is timed 200 times.
//! - `worker` ([`worker`]): what a `ProcessWorker` costs per process (claim,
//!   empty handler, fenced complete, release) against the same raw calls.
//!
//! `--store sqlite` and `--store postgres` run the durable store's figures
//! ([`durable`]) and the several-node figures ([`scaleout`]) instead.
//!
//! `--in-block-on` drives the figures from the runtime's `block_on` future,
//! as the body of `#[tokio::main]` runs, instead of from a task on its
//! workers: it shows what a caller that is not a worker pays per call.
//!
//! `--quick` shrinks every size (about 15 s in a debug build); `--smoke`
//! shrinks them further and runs one round (about 4 s in a debug build).
//! `--json PATH` also writes the table, with machine information, as JSON.
//!
//! `cargo test --all-targets` runs this bench too, without `--bench` (the
//! argument `cargo bench` passes): the loadgen then leaves its arguments to
//! the test harness they were meant for and makes a smoke pass, every phase
//! with `--smoke` sizes, child processes included, exiting 0 when every
//! phase ran.
//!
//! The modules, by job: [`args`] (command line and sizes), [`figures`],
//! [`activation`], [`memory`], [`flood`], [`listing`] and [`worker`] (one phase each, parent and
//! child side), [`passivation`] (the passivating actor registry two phases
//! measure), [`forwarder`] (the ceiling row's actor), [`report`]
//! (statistics, table, JSON) and [`sys`] (RSS, CPU, child processes). The
//! registries under test, the workload and the parked-caller timings are
//! the criterion benches' too: [`support`] (`benches/support/`).

use std::error::Error;
use std::time::{Instant, SystemTime};

mod activation;
mod args;
mod durable;
mod figures;
mod flood;
mod forwarder;
mod listing;
mod memory;
mod passivation;
mod report;
mod scaleout;
#[path = "../support/mod.rs"]
mod support;
mod sys;
mod worker;
// The operator CLI's time formatting, written once; the loadgen uses
// only its RFC 3339 timestamps.
#[path = "../../src/bin/process-registry/time.rs"]
#[allow(dead_code, unused_imports)]
mod time;

use args::{Args, Phase, Sizes};

type BoxError = Box<dyn Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// Runs `phase` as a task on a fresh runtime ([`support::workload::runtime`]),
/// so the driver is a worker like the callers it measures.
pub fn as_task<T, F>(phase: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    support::workload::runtime()?.block_on(async move { tokio::spawn(phase).await? })
}

fn main() {
    if let Err(err) = run() {
        eprintln!("loadgen: {err}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = Args::from_env()?;
    let sizes = Sizes::new(&args);
    if let Some(kind) = args.memory_phase {
        return memory::memory_phase(kind, sizes.memory_processes);
    }
    if let Some(kind) = args.flood_phase {
        return flood::flood_phase(kind, sizes.flood_callers);
    }
    if let Some(id) = &args.figure_phase {
        return figures::figure_phase(id, sizes, args.in_block_on);
    }
    if let Some(words) = &args.durable_phase {
        return durable::durable_phase(words);
    }
    if args.sqlite {
        let durable_sizes = durable::Durable::new(&args);
        let rows = durable::run_durable(&durable_sizes)?;
        println!("{}", durable::render(&rows));
        if let Some(path) = &args.json {
            let json = serde_json::json!({ "sizes": durable_sizes, "durable": rows });
            std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
                .map_err(|err| format!("writing {}: {err}", path.display()))?;
            eprintln!("loadgen: wrote {}", path.display());
        }
        return Ok(());
    }
    if args.postgres {
        let server = args
            .postgres_url
            .clone()
            .or_else(process_registry::testing::postgres::server)
            .ok_or("--store postgres needs a server: --postgres URL or PROCESS_REGISTRY_TEST_POSTGRES")?;
        let sizes = scaleout::ScaleOut::new(args.smoke, args.quick, args.rounds);
        let rows = scaleout::run_postgres(&server, &sizes)?;
        println!("{}", durable::render(&rows));
        if let Some(path) = &args.json {
            let json = serde_json::json!({ "sizes": sizes, "postgres": rows });
            std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")
                .map_err(|err| format!("writing {}: {err}", path.display()))?;
            eprintln!("loadgen: wrote {}", path.display());
        }
        return Ok(());
    }
    if let Some(ignored) = &args.harness_args {
        eprintln!(
            "loadgen: run without --bench, as `cargo test` runs it: a smoke pass with --smoke sizes{}; \
             `cargo bench --bench loadgen -- [flags]` measures",
            if ignored.is_empty() { String::new() } else { format!(" (ignoring {})", ignored.join(" ")) }
        );
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
    if args.only.contains(&Phase::Figures) {
        rows.extend(figures::run_figures(&args)?);
    }
    let mut activation = None;
    if args.only.contains(&Phase::Activation) {
        let (activation_rows, report) = activation::run_activation(sizes)?;
        rows.extend(activation_rows);
        activation = Some(report);
    }
    let mut memory_reports = Vec::new();
    if args.only.contains(&Phase::Memory) {
        let (memory_rows, reports) = memory::memory_rows(&sizes)?;
        rows.extend(memory_rows);
        memory_reports = reports;
    }
    let mut flood_reports = Vec::new();
    if args.only.contains(&Phase::Flood) {
        let (flood_rows, reports) = flood::flood_rows(&sizes)?;
        rows.extend(flood_rows);
        flood_reports = reports;
    }
    if args.only.contains(&Phase::Listing) {
        rows.extend(listing::run_listing(sizes)?);
    }
    if args.only.contains(&Phase::Worker) {
        rows.extend(worker::run_worker(sizes)?);
    }

    println!("{}", report::render_table(&rows));
    if args.harness_args.is_some() {
        // The smoke pass runs the durable figures too, at smoke sizes.
        println!("{}", durable::render(&durable::run_durable(&durable::Durable::new(&args))?));
        // And the PostgreSQL figures, on the test server (CI starts one;
        // a local run without one says so and goes on).
        if let Some(server) = process_registry::testing::postgres::server() {
            let sizes = scaleout::ScaleOut::new(true, false, None);
            println!("{}", durable::render(&scaleout::run_postgres(&server, &sizes)?));
        }
    }
    report::print_notes(&sizes, clock.elapsed(), activation.as_ref(), &memory_reports, &flood_reports);
    if let Some(path) = &args.json {
        let json =
            report::report_json(&args, &sizes, &rows, activation.as_ref(), &memory_reports, &flood_reports, started);
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").map_err(|err| format!("writing {}: {err}", path.display()))?;
        eprintln!("loadgen: wrote {}", path.display());
    }
    Ok(())
}
