//! Many callers flooding one process (phase `flood`), each registry in a
//! child process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{ActorProcessRegistry, MailboxConfig, RegistryStats};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::args::{Sizes, FLOOD_PHASE_FLAG};
use crate::report::{count, per_second, single_side, Row, Unit};
use crate::support::subject::{Kind, Subject};
use crate::support::workload::{register, runtime, tick};
use crate::sys::{page_size, rss_bytes, run_child, trim_heap, RssSampler};
use crate::{BoxError, Result};

/// The line prefix a flood-phase child reports its result with.
const FLOOD_REPORT_PREFIX: &str = "LOADGEN-FLOOD ";

/// How often the flood phase samples RSS.
pub const FLOOD_SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The process the flood phase floods.
const FLOOD_PROCESS: &str = "flood";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FloodReport {
    pub kind: Kind,
    pub callers: u64,
    /// Actor only: the mailbox bound (calls in flight) of the flooded process.
    pub mailbox_capacity: Option<usize>,
    /// RSS before the callers were spawned.
    pub rss_before_bytes: u64,
    /// The highest RSS sampled while the callers ran.
    pub rss_peak_bytes: u64,
    /// RSS once every caller had its answer.
    pub rss_after_bytes: u64,
    /// Diagnostic: RSS afterwards and after `malloc_trim(0)` (glibc only):
    /// about what stays in use, mostly the appended log.
    pub rss_after_trimmed_bytes: Option<u64>,
    /// (`rss_peak_bytes` - `rss_before_bytes`) / `callers`.
    pub bytes_per_caller: f64,
    pub rss_samples: u64,
    /// Calls answered with success.
    pub completed: u64,
    /// Calls answered with an error.
    pub failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The sequence of the process's last event afterwards (= `completed`
    /// when every accepted append is in the log exactly once).
    pub last_sequence: u64,
    /// From releasing the callers to the last answer.
    pub seconds: f64,
    /// Actor only: stats afterwards.
    pub stats: Option<RegistryStats>,
}

/// The child side: `callers` tasks, released at once, each append one event
/// to one process, while a thread samples RSS; prints a [`FloodReport`] line.
pub fn flood_phase(kind: Kind, callers: u64) -> Result<()> {
    let page_size = page_size();
    let runtime = runtime()?;
    let report = runtime.block_on(async move {
        tokio::spawn(async move {
            // The default configuration: the default mailbox bound and policy.
            let subject = Subject::start(kind).await?;
            let registry = Arc::clone(&subject.registry);
            register(&registry, FLOOD_PROCESS).await?;
            // Activate the actor before measuring (a mutation: reads start none).
            registry.clear_process_wait(FLOOD_PROCESS).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let rss_before = rss_bytes(page_size)?;
            let sampler = RssSampler::start(page_size, FLOOD_SAMPLE_EVERY);
            let (go, gate) = watch::channel(false);
            let tasks: Vec<_> = (0..callers)
                .map(|n| {
                    let (registry, mut gate) = (Arc::clone(&registry), gate.clone());
                    tokio::spawn(async move {
                        gate.wait_for(|go| *go).await.map_err(|err| err.to_string())?;
                        registry.append_event(FLOOD_PROCESS, tick(n)).await.map(drop).map_err(|err| err.to_string())
                    })
                })
                .collect();
            drop(gate);
            let start = Instant::now();
            go.send(true).map_err(|_| "every flood caller is gone")?;
            let (mut completed, mut failed, mut first_error) = (0, 0, None);
            for task in tasks {
                match task.await? {
                    Ok(()) => completed += 1,
                    Err(err) => {
                        failed += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            let seconds = start.elapsed().as_secs_f64();
            let rss_after = rss_bytes(page_size)?;
            let (rss_peak, rss_samples) = sampler.finish()?;
            let rss_after_trimmed = if trim_heap() { Some(rss_bytes(page_size)?) } else { None };
            let last = registry.recent_events(FLOOD_PROCESS, 1).await?;
            Ok::<_, BoxError>(FloodReport {
                kind,
                callers,
                mailbox_capacity: subject.actor.as_ref().map(|_| MailboxConfig::default().capacity),
                rss_before_bytes: rss_before,
                rss_peak_bytes: rss_peak,
                rss_after_bytes: rss_after,
                rss_after_trimmed_bytes: rss_after_trimmed,
                bytes_per_caller: rss_peak.saturating_sub(rss_before) as f64 / callers as f64,
                rss_samples,
                completed,
                failed,
                first_error,
                last_sequence: last.last().map_or(0, |event| event.sequence),
                seconds,
                stats: subject.actor.as_ref().map(ActorProcessRegistry::stats),
            })
        })
        .await?
    })?;
    println!("{FLOOD_REPORT_PREFIX}{}", serde_json::to_string(&report)?);
    std::process::exit(0);
}

/// The parent side: runs [`flood_phase`] in a child process.
fn run_flood_child(kind: Kind, callers: u64) -> Result<FloodReport> {
    let args = [FLOOD_PHASE_FLAG.to_owned(), kind.name().to_owned(), "--callers".to_owned(), callers.to_string()];
    run_child(&format!("{} flood phase", kind.name()), &args, FLOOD_REPORT_PREFIX)
}

pub fn flood_rows(sizes: &Sizes) -> Result<(Vec<Row>, Vec<FloodReport>)> {
    let callers = sizes.flood_callers;
    eprintln!("[flood] {} concurrent appends to one process, each registry in a child process", count(callers));
    let actor = run_flood_child(Kind::Actor, callers)?;
    let baseline = run_flood_child(Kind::Baseline, callers)?;
    let completed = format!(
        "completed: actor {}/{}, baseline {}/{}",
        count(actor.completed),
        count(callers),
        count(baseline.completed),
        count(callers)
    );
    let throughput =
        |report: &FloodReport| single_side(per_second(report.completed, Duration::from_secs_f64(report.seconds)));
    let rows = vec![
        Row::new(
            "flood_peak_rss",
            format!("flood: {} callers append to 1 process, peak RSS delta incl. the log", count(callers)),
            Unit::BytesPerCaller,
            single_side(actor.bytes_per_caller),
            single_side(baseline.bytes_per_caller),
        )
        .with_comment(completed),
        Row::new(
            "flood_throughput",
            format!("flood: {} callers append to 1 process, all answered", count(callers)),
            Unit::OpsPerSec,
            throughput(&actor),
            throughput(&baseline),
        ),
    ];
    Ok((rows, vec![actor, baseline]))
}
