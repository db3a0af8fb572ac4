//! The PostgreSQL store's figures (`--store postgres`): several nodes on one
//! database, on the server `PROCESS_REGISTRY_TEST_POSTGRES` names (or
//! `--postgres URL`), each round on a fresh database.
//!
//! - `pg_append_1_node_64`: one node, 64 processes with one sequential
//!   appender each: durable appends/s, against `64 / L`, where `L` is the
//!   `fdatasync` latency measured in the same run (the server's WAL flush
//!   costs about that; its group commit is ours, one transaction per batch).
//! - `pg_append_3_nodes_64`: three nodes, 64 appenders each on processes of
//!   their own, aggregate appends/s, against the one-node figure. On 2
//!   cores the three nodes, their callers and the server share the cores:
//!   this shows what a second and third node cost, not what three machines
//!   would give.
//! - `pg_append_sequential` and `pg_read_events_after_tail`: the cost of one
//!   call on one node (p50), against the same call on one node on SQLite
//!   (`SyncMode::Full`): a PostgreSQL call pays a version check (one round
//!   trip) before it is planned, and a write its commit.
//! - `pg_wake_cross_node`: a waiter parked on node B for 5 ms, an append on
//!   node A: from the start of the append to the waiter's answer (p50, with
//!   p99 in the label), against the same with the waiter on node A.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::testing::postgres;
use process_registry::{ActorProcessRegistry, CommitMode, ProcessRegistry, RegistryConfig, SyncMode};

use crate::durable::{append_rate, fsync_latency, median, open, read_p50, row, DurableRow};
use crate::support::workload::{register, runtime, tick, TICK};
use crate::Result;

/// How much work the PostgreSQL figures do.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct ScaleOut {
    pub rounds: usize,
    pub fsync_samples: u64,
    /// Appends of each of the 64 appenders of a node, per round.
    pub appends_per_appender: u64,
    pub sequential_appends: u64,
    pub read_samples: u64,
    pub wake_samples: u64,
}

impl ScaleOut {
    pub fn new(smoke: bool, quick: bool, rounds: Option<usize>) -> Self {
        let mut sizes = if smoke {
            Self {
                rounds: 1,
                fsync_samples: 10,
                appends_per_appender: 2,
                sequential_appends: 5,
                read_samples: 10,
                wake_samples: 5,
            }
        } else if quick {
            Self {
                rounds: 2,
                fsync_samples: 50,
                appends_per_appender: 20,
                sequential_appends: 100,
                read_samples: 200,
                wake_samples: 100,
            }
        } else {
            Self {
                rounds: 3,
                fsync_samples: 200,
                appends_per_appender: 100,
                sequential_appends: 500,
                read_samples: 1_000,
                wake_samples: 500,
            }
        };
        if let Some(rounds) = rounds {
            sizes.rounds = rounds.max(1);
        }
        sizes
    }
}

async fn nodes(url: &str, count: usize) -> Result<Vec<ActorProcessRegistry>> {
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(ActorProcessRegistry::connect(url, RegistryConfig::default()).await?);
    }
    Ok(nodes)
}

async fn shutdown(nodes: Vec<ActorProcessRegistry>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Aggregate appends/s of `count` nodes, 64 appenders each on processes
/// of their own, all started together.
async fn nodes_rate(server: &str, count: usize, per_task: u64) -> Result<f64> {
    let url = postgres::fresh_database(server).await;
    let nodes = nodes(&url, count).await?;
    let started = Instant::now();
    let mut runs = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let shared: Arc<dyn ProcessRegistry> = Arc::new(node.clone());
        runs.push(tokio::spawn(async move {
            append_rate(&shared, &format!("node{index}"), 64, per_task, false, || 0).await
        }));
    }
    for run in runs {
        run.await.map_err(|error| format!("a node's appenders failed: {error}"))?.map_err(|error| error.to_string())?;
    }
    // Registration is inside the window on every node alike; the figure
    // is appends over the whole window, so it slightly understates.
    let rate = crate::report::per_second(count as u64 * 64 * per_task, started.elapsed());
    shutdown(nodes).await;
    Ok(rate)
}

/// p50 (us) of one sequential append, and of `events_after` for the last
/// 10 events, on `registry`.
async fn call_costs(registry: &Arc<dyn ProcessRegistry>, sizes: &ScaleOut) -> Result<(f64, f64)> {
    register(registry, "costs").await?;
    let mut times = Vec::new();
    for n in 0..sizes.sequential_appends {
        let started = Instant::now();
        registry.append_event("costs", tick(n)).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let append = median(times);
    let last = sizes.sequential_appends;
    let read = read_p50(sizes.read_samples, || async {
        registry.events_after("costs", last.saturating_sub(10)).await?;
        Ok(())
    })
    .await?;
    Ok((append, read))
}

/// Wake latencies (us): waiter on `waiting`, append on `appending`.
async fn wake_latencies(
    waiting: &ActorProcessRegistry,
    appending: &ActorProcessRegistry,
    prefix: &str,
    samples: u64,
) -> Result<Vec<f64>> {
    let shared: Arc<dyn ProcessRegistry> = Arc::new(appending.clone());
    let mut times = Vec::new();
    for n in 0..samples {
        let id = format!("{prefix}-{n}");
        register(&shared, &id).await?;
        let waiter = {
            let (waiting, id) = (waiting.clone(), id.clone());
            tokio::spawn(async move {
                let answered = waiting.wait_event_after(&id, TICK, 0).await;
                (answered, Instant::now())
            })
        };
        // Parked well before the append.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        appending.append_event(&id, tick(n)).await?;
        let (answered, at) = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .map_err(|_| format!("the waiter of {id} was not answered"))??;
        answered?;
        times.push(at.saturating_duration_since(started).as_secs_f64() * 1e6);
    }
    Ok(times)
}

fn percentile(mut values: Vec<f64>, fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * fraction).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}

/// Every PostgreSQL figure, on `server`.
pub fn run_postgres(server: &str, sizes: &ScaleOut) -> Result<Vec<DurableRow>> {
    let directory = tempfile::tempdir()?;
    let fsync = fsync_latency(directory.path(), sizes.fsync_samples)?;
    let fsync_ms = fsync.as_secs_f64() * 1e3;
    eprintln!("loadgen: fdatasync on {}: p50 {fsync_ms:.3} ms", directory.path().display());
    let runtime = runtime()?;
    let mut rows = Vec::new();

    let (one, three) = runtime.block_on(async {
        let mut one = Vec::new();
        let mut three = Vec::new();
        for _ in 0..sizes.rounds {
            one.push(nodes_rate(server, 1, sizes.appends_per_appender).await?);
            three.push(nodes_rate(server, 3, sizes.appends_per_appender).await?);
        }
        Ok::<_, crate::BoxError>((median(one), median(three)))
    })?;
    rows.push(row(
        "pg_append_1_node_64",
        "append, 1 node x 64 processes x 1 sequential appender (durable)",
        (one, "appends/s"),
        (64.0 / fsync.as_secs_f64(), format!("64 / fsync ({fsync_ms:.2} ms)")),
        "stated",
        |_, _| true,
    ));
    rows.push(row(
        "pg_append_3_nodes_64",
        "append, 3 nodes x 64 appenders, aggregate (2 cores shared by nodes and server)",
        (three, "appends/s"),
        (one, "1 node".to_owned()),
        "stated",
        |_, _| true,
    ));

    let ((pg_append, pg_read), (sqlite_append, sqlite_read)) = runtime.block_on(async {
        let url = postgres::fresh_database(server).await;
        let node = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await?;
        let shared: Arc<dyn ProcessRegistry> = Arc::new(node.clone());
        let pg = call_costs(&shared, sizes).await?;
        node.shutdown().await;
        let sqlite = open(&directory.path().join("costs.db"), SyncMode::Full, CommitMode::default()).await?;
        let shared: Arc<dyn ProcessRegistry> = Arc::new(sqlite.clone());
        let local = call_costs(&shared, sizes).await?;
        sqlite.shutdown().await;
        Ok::<_, crate::BoxError>((pg, local))
    })?;
    rows.push(row(
        "pg_append_sequential",
        "one append on one node (p50)",
        (pg_append, "us"),
        (sqlite_append, "SQLite, SyncMode::Full".to_owned()),
        "stated",
        |_, _| true,
    ));
    rows.push(row(
        "pg_read_events_after_tail",
        "events_after, last 10, on one node (p50)",
        (pg_read, "us"),
        (sqlite_read, "SQLite".to_owned()),
        "stated",
        |_, _| true,
    ));

    let (cross, local) = runtime.block_on(async {
        let url = postgres::fresh_database(server).await;
        let pair = nodes(&url, 2).await?;
        let cross = wake_latencies(&pair[1], &pair[0], "cross", sizes.wake_samples).await?;
        let local = wake_latencies(&pair[0], &pair[0], "local", sizes.wake_samples).await?;
        shutdown(pair).await;
        Ok::<_, crate::BoxError>((cross, local))
    })?;
    let cross_p99 = percentile(cross.clone(), 0.99);
    let local_p99 = percentile(local.clone(), 0.99);
    rows.push(row(
        "pg_wake_cross_node",
        &format!(
            "wake across nodes: append on A to waiter on B answered (p50; p99 {:.0} us, same node p99 {:.0} us)",
            cross_p99, local_p99
        ),
        (percentile(cross, 0.5), "us"),
        (percentile(local, 0.5), "waiter on A".to_owned()),
        "stated",
        |_, _| true,
    ));
    Ok(rows)
}
