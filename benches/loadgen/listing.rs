//! The recovery worklist at scale (phase `listing`): `list_non_terminal`
//! with a few running processes among very many finished ones.
//!
//! Each registry registers `listing_processes` processes from
//! [`LOAD_TASKS`](crate::memory::LOAD_TASKS) concurrent tasks and completes
//! all but `listing_running` of them (every 1,000th stays running), then
//! times `list_non_terminal` `listing_samples` times in a row, checking
//! each answer's length. The actor registry keeps an ordered index per
//! status, so the call costs O(result); the baseline filters every record
//! under its lock.
//!
//! The trait returns owned records, so no listing can cost less than a deep
//! copy of its answer, and on a heap holding a million processes that copy
//! is most of it: the allocator hands out chunks scattered over gigabytes,
//! each first write a cache and TLB miss. So after each call the phase also
//! times a copy of the answer it got (`clone()` of the returned records,
//! same process, same heap), and a second row states the listing as a ratio
//! to that floor. The actor registry passivates (as in the memory phase),
//! so a million processes never keep a million actors alive, and the
//! timing starts once every actor has passivated: a registry at rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{ProcessAwaitOutput, ProcessRegistry};
use serde_json::json;

use crate::args::Sizes;
use crate::figures::expect_len;
use crate::memory::for_each_concurrently;
use crate::passivation::{passivating_actor_config, until_passivated};
use crate::report::{count, latency_side, ratio_of_medians, Row, Unit};
use crate::support::subject::{Kind, Subject};
use crate::support::workload::register;
use crate::Result;

fn listing_id(i: u64) -> String {
    format!("listing-{i:08}")
}

/// Whether process `i` of `processes` stays running: `running` of them,
/// spread evenly over the id range.
fn stays_running(i: u64, processes: u64, running: u64) -> bool {
    let every = (processes / running.max(1)).max(1);
    i.is_multiple_of(every) && i / every < running
}

/// Registers the fixture on `subject` and completes every process that does
/// not stay running.
async fn listing_fixture(subject: &Subject, sizes: Sizes) -> Result<()> {
    let (processes, running) = (sizes.listing_processes, sizes.listing_running);
    let registry = Arc::clone(&subject.registry);
    for_each_concurrently(processes, move |i| {
        let registry = Arc::clone(&registry);
        async move {
            let id = listing_id(i);
            register(&registry, &id).await?;
            if !stays_running(i, processes, running) {
                registry
                    .complete_process(&id, ProcessAwaitOutput::success(json!({ "i": i })))
                    .await
                    .map_err(|err| format!("complete {id}: {err}"))?;
            }
            Ok(())
        }
    })
    .await
}

/// What one side's listings cost: each call, and a copy of its answer.
struct Worklist {
    calls: Vec<Duration>,
    copies: Vec<Duration>,
}

/// Times `list_non_terminal` `samples` times on `registry`, and after each
/// call a deep copy of the records it returned.
async fn time_worklist(registry: &Arc<dyn ProcessRegistry>, sizes: Sizes) -> Result<Worklist> {
    let mut times = Worklist { calls: Vec::new(), copies: Vec::new() };
    for _ in 0..sizes.listing_samples {
        let start = Instant::now();
        let running = registry.list_non_terminal().await?;
        times.calls.push(start.elapsed());
        expect_len("list_non_terminal", running.len(), sizes.listing_running)?;
        let start = Instant::now();
        let copy = std::hint::black_box(running.clone());
        times.copies.push(start.elapsed());
        drop((copy, running));
    }
    Ok(times)
}

async fn listing_side(kind: Kind, sizes: Sizes) -> Result<Worklist> {
    let subject = Subject::start_with(kind, passivating_actor_config()).await?;
    let start = Instant::now();
    listing_fixture(&subject, sizes).await?;
    eprintln!("[listing] {}: fixture built in {:.1} s", kind.name(), start.elapsed().as_secs_f64());
    // Time a registry at rest: every actor the fixture woke has passivated.
    if let Some(actor) = &subject.actor {
        until_passivated(actor, 0).await?;
    }
    let times = time_worklist(&subject.registry, sizes).await?;
    subject.shutdown().await;
    Ok(times)
}

async fn listing_phase(sizes: Sizes) -> Result<Vec<Row>> {
    let actor = listing_side(Kind::Actor, sizes).await?;
    let baseline = listing_side(Kind::Baseline, sizes).await?;
    let (running, processes) = (count(sizes.listing_running), count(sizes.listing_processes));
    let calls = latency_side(actor.calls);
    let copies = latency_side(actor.copies);
    let over_copy = ratio_of_medians(&calls, &copies);
    Ok(vec![
        Row::new(
            "list_non_terminal_few_running",
            format!("list_non_terminal, {running} running of {processes} processes"),
            Unit::Micros,
            calls.clone(),
            latency_side(baseline.calls),
        ),
        Row::new(
            "list_non_terminal_answer_copy",
            format!("same, against a deep copy of its answer ({running} records, same heap)"),
            Unit::Micros,
            calls,
            copies,
        )
        .with_ratio(
            over_copy,
            "listing/copy",
            "ratio = actor listing p50 / p50 of clone() of the records it returned (the floor any listing that \
             returns owned records pays)",
        ),
    ])
}

/// Runs [`listing_phase`] as a task on a fresh runtime.
pub fn run_listing(sizes: Sizes) -> Result<Vec<Row>> {
    crate::as_task(async move {
        eprintln!(
            "[listing] {} processes per registry, {} left running",
            count(sizes.listing_processes),
            count(sizes.listing_running)
        );
        listing_phase(sizes).await
    })
}
