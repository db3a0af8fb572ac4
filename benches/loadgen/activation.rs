//! Activation latency (phase `activation`): the first mutation on a
//! passivated process (it starts an actor) against the same call again,
//! and a read of a passivated process (answered without starting one)
//! against the same read once the actor runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{ProcessRegistry, RegistryStats};
use serde::Serialize;

use crate::args::Sizes;
use crate::figures::expect_len;
use crate::passivation::{passivating_actor_config, until_passivated, PASSIVATION_IDLE};
use crate::report::{count, latency_side, ratio_of_medians, Row, Unit};
use crate::support::subject::{Kind, Subject};
use crate::support::workload::register;
use crate::Result;

/// What the activation phase saw on the actor registry, besides latencies.
#[derive(Clone, Debug, Serialize)]
pub struct ActivationReport {
    pub processes: u64,
    /// Passivation idle time of the registry, ms.
    pub idle_ms: u64,
    /// Stats after every process had been called once.
    pub stats_called: RegistryStats,
    /// Stats once every actor had passivated, before the timed calls.
    pub stats_passivated: RegistryStats,
    /// Stats after the timed calls.
    pub stats_after: RegistryStats,
    /// From the last untimed call to `live_actors == 0`.
    pub passivate_wait_seconds: f64,
    /// Timed first calls during which `activations` did not grow by exactly
    /// one (0 when every cold call measured one activation).
    pub cold_calls_not_activating: u64,
    /// Timed second calls during which `activations` grew (0 when every warm
    /// call found its actor running).
    pub warm_calls_activating: u64,
    /// Timed reads of a passivated process during which `activations` grew
    /// (0 when every read left its process passive).
    pub cold_reads_activating: u64,
}

fn activation_id(i: u64) -> String {
    format!("activation-{i:06}")
}

/// Registers `processes` processes on `subject` and calls each once with a
/// mutation (which starts an actor; a read does not).
async fn activation_fixture(subject: &Subject, processes: u64) -> Result<()> {
    for i in 0..processes {
        register(&subject.registry, &activation_id(i)).await?;
    }
    for i in 0..processes {
        subject.registry.clear_process_wait(&activation_id(i)).await?;
    }
    Ok(())
}

/// Times `clear_process_wait(id)` (a mutation that changes nothing).
async fn time_mutation(registry: &Arc<dyn ProcessRegistry>, id: &str) -> Result<Duration> {
    let start = Instant::now();
    registry.clear_process_wait(id).await?;
    Ok(start.elapsed())
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
    let (mut cold_read, mut warm_read) = (Vec::new(), Vec::new());
    let (mut cold_calls_not_activating, mut warm_calls_activating, mut cold_reads_activating) = (0, 0, 0);
    for i in 0..processes {
        let id = activation_id(i);
        let before = actor.stats().activations;
        cold_read.push(time_events_after(&subject.registry, &id).await?);
        let read = actor.stats().activations;
        cold.push(time_mutation(&subject.registry, &id).await?);
        let between = actor.stats().activations;
        warm.push(time_mutation(&subject.registry, &id).await?);
        warm_read.push(time_events_after(&subject.registry, &id).await?);
        let after = actor.stats().activations;
        cold_reads_activating += u64::from(read != before);
        cold_calls_not_activating += u64::from(between != read + 1);
        warm_calls_activating += u64::from(after != between);
    }
    let stats_after = actor.stats();
    subject.shutdown().await;
    drop(subject);

    let subject = Subject::start(Kind::Baseline).await?;
    activation_fixture(&subject, processes).await?;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    let (mut first_read, mut second_read) = (Vec::new(), Vec::new());
    for i in 0..processes {
        let id = activation_id(i);
        first_read.push(time_events_after(&subject.registry, &id).await?);
        first.push(time_mutation(&subject.registry, &id).await?);
        second.push(time_mutation(&subject.registry, &id).await?);
        second_read.push(time_events_after(&subject.registry, &id).await?);
    }

    let (cold, warm) = (latency_side(cold), latency_side(warm));
    let cold_over_warm = ratio_of_medians(&cold, &warm);
    let (cold_read, warm_read) = (latency_side(cold_read), latency_side(warm_read));
    let cold_read_over_warm = ratio_of_medians(&cold_read, &warm_read);
    let n = count(processes);
    let rows = vec![
        Row::new(
            "activation_cold",
            format!("activation: clear_process_wait on a passivated process, {n} processes"),
            Unit::Micros,
            cold.clone(),
            latency_side(first),
        )
        .with_ratio(
            cold_over_warm,
            "cold/warm",
            "ratio = actor cold p50 / actor warm p50 (next row); baseline: no activation, its column is a plain \
             clear_process_wait",
        ),
        Row::new(
            "activation_warm",
            format!("clear_process_wait again on the same process (warm), {n} processes"),
            Unit::Micros,
            warm,
            latency_side(second),
        ),
        Row::new(
            "read_cold",
            format!("events_after on a passivated process (no activation), {n} processes"),
            Unit::Micros,
            cold_read.clone(),
            latency_side(first_read),
        )
        .with_ratio(
            cold_read_over_warm,
            "cold/warm",
            "ratio = actor cold read p50 / actor warm read p50 (next row), target <= 1.5; baseline: a plain \
             events_after",
        ),
        Row::new(
            "read_warm",
            format!("events_after on the same process, its actor running, {n} processes"),
            Unit::Micros,
            warm_read,
            latency_side(second_read),
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
        cold_reads_activating,
    };
    Ok((rows, report))
}

/// Runs [`activation_phase`] as a task on a fresh runtime.
pub fn run_activation(sizes: Sizes) -> Result<(Vec<Row>, ActivationReport)> {
    crate::as_task(async move {
        eprintln!("[activation] {} processes per registry", count(sizes.activation_processes));
        activation_phase(sizes).await
    })
}
