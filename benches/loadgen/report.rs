//! The results: per-round samples, their statistics (medians,
//! percentiles, ratios), the rows of the table, the table itself, the notes
//! under it, and the JSON report.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use process_registry::RegistryStats;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::activation::ActivationReport;
use crate::args::{Args, Sizes};
use crate::flood::FloodReport;
use crate::memory::MemoryReport;
use crate::support::subject::Kind;
use crate::sys::cpu_model;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    OpsPerSec,
    Micros,
    BytesPerProcess,
    BytesPerCaller,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::Micros => "us",
            Unit::BytesPerProcess => "B/process",
            Unit::BytesPerCaller => "B/caller",
        }
    }

    fn better(self) -> Better {
        match self {
            Unit::OpsPerSec => Better::Higher,
            Unit::Micros | Unit::BytesPerProcess | Unit::BytesPerCaller => Better::Lower,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Higher,
    Lower,
}

/// What one round of one figure measured.
pub enum Sample {
    Throughput(f64),
    Latencies(Vec<Duration>),
}

pub fn per_second(ops: u64, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// One registry's result for one figure.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Side {
    /// Throughput: the median of the rounds. Latency: p50 of all samples.
    pub median: Option<f64>,
    /// Latency only: p99 of all samples.
    pub p99: Option<f64>,
    /// Throughput: each round's value. Latency: each round's p50.
    pub rounds: Vec<f64>,
    /// Latency samples taken (all rounds).
    pub samples: usize,
}

/// Accumulates one registry's samples over the rounds.
#[derive(Default)]
pub struct Collected {
    round_values: Vec<f64>,
    latencies_us: Vec<f64>,
}

impl Collected {
    pub fn add(&mut self, sample: Sample) {
        match sample {
            Sample::Throughput(ops) => self.round_values.push(ops),
            Sample::Latencies(times) => {
                let mut micros: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
                micros.sort_by(f64::total_cmp);
                if let Some(p50) = percentile(&micros, 0.50) {
                    self.round_values.push(p50);
                }
                self.latencies_us.extend(micros);
            }
        }
    }

    pub fn side(mut self, unit: Unit) -> Side {
        if unit == Unit::Micros {
            self.latencies_us.sort_by(f64::total_cmp);
            Side {
                median: percentile(&self.latencies_us, 0.50),
                p99: percentile(&self.latencies_us, 0.99),
                rounds: self.round_values,
                samples: self.latencies_us.len(),
            }
        } else {
            let mut sorted = self.round_values.clone();
            sorted.sort_by(f64::total_cmp);
            Side { median: median(&sorted), p99: None, rounds: self.round_values, samples: 0 }
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn median(sorted: &[f64]) -> Option<f64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(n / 2).copied(),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// What [`Row::ratio`] divides, when it is not the default.
const ACTOR_OVER_BASELINE: &str = "actor/baseline";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub label: String,
    pub unit: Unit,
    pub better: Better,
    pub actor: Side,
    pub baseline: Side,
    /// `ratio_of`, of the medians (p50 for latencies).
    pub ratio: Option<f64>,
    /// What `ratio` divides: `actor/baseline` unless the row says otherwise.
    pub ratio_of: String,
    /// What the table says instead of who is better, when that verdict
    /// would mislead (the ratio is not actor/baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Row {
    pub fn new(id: &str, label: String, unit: Unit, actor: Side, baseline: Side) -> Self {
        let ratio = ratio_of_medians(&actor, &baseline);
        Self {
            id: id.to_owned(),
            label,
            unit,
            better: unit.better(),
            actor,
            baseline,
            ratio,
            ratio_of: ACTOR_OVER_BASELINE.to_owned(),
            comment: None,
        }
    }

    /// Replaces the ratio with `ratio`, which divides `ratio_of`; `comment`
    /// takes the place of the verdict.
    pub fn with_ratio(mut self, ratio: Option<f64>, ratio_of: &str, comment: &str) -> Self {
        self.ratio = ratio;
        self.ratio_of = ratio_of.to_owned();
        self.comment = Some(comment.to_owned());
        self
    }

    pub fn with_comment(mut self, comment: String) -> Self {
        self.comment = Some(comment);
        self
    }
}

pub fn ratio_of_medians(numerator: &Side, denominator: &Side) -> Option<f64> {
    match (numerator.median, denominator.median) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The [`Side`] of one latency measurement (one round of samples).
pub fn latency_side(times: Vec<Duration>) -> Side {
    let mut collected = Collected::default();
    collected.add(Sample::Latencies(times));
    collected.side(Unit::Micros)
}

/// The [`Side`] of a single value (no rounds, no p99).
pub fn single_side(value: f64) -> Side {
    Side { median: Some(value), p99: None, rounds: vec![value], samples: 0 }
}

/// `1234567` as `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn format_value(value: Option<f64>, unit: Unit) -> String {
    match value {
        None => "-".to_owned(),
        Some(v) => match unit {
            Unit::OpsPerSec | Unit::BytesPerProcess | Unit::BytesPerCaller => count(v.round() as u64),
            Unit::Micros if v >= 1_000.0 => count(v.round() as u64),
            Unit::Micros if v >= 100.0 => format!("{v:.0}"),
            Unit::Micros => format!("{v:.2}"),
        },
    }
}

pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "figure",
        "unit",
        "better",
        "actor p50/median",
        "baseline p50/median",
        "actor p99",
        "baseline p99",
        "ratio",
        "",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let default_ratio = row.ratio_of == ACTOR_OVER_BASELINE;
            let (ratio, verdict) = match row.ratio {
                Some(ratio) if default_ratio => {
                    let actor_wins = match row.better {
                        Better::Higher => ratio > 1.0,
                        Better::Lower => ratio < 1.0,
                    };
                    let verdict = if actor_wins { "actor better" } else { "baseline better" };
                    let verdict = match &row.comment {
                        Some(comment) => format!("{verdict}; {comment}"),
                        None => verdict.to_owned(),
                    };
                    (format!("{ratio:.2}x"), verdict)
                }
                Some(ratio) => (format!("{ratio:.2}x {}", row.ratio_of), row.comment.clone().unwrap_or_default()),
                None => ("-".to_owned(), row.comment.clone().unwrap_or_default()),
            };
            [
                row.label.clone(),
                row.unit.label().to_owned(),
                match row.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                }
                .to_owned(),
                format_value(row.actor.median, row.unit),
                format_value(row.baseline.median, row.unit),
                format_value(row.actor.p99, row.unit),
                format_value(row.baseline.p99, row.unit),
                ratio,
                verdict,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Text columns left-aligned, numbers right-aligned.
            if i < 3 || i == 8 {
                let _ = write!(text, "{cell:<width$}  ");
            } else {
                let _ = write!(text, "{cell:>width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    line(&widths.map(|width| "-".repeat(width)));
    for row in &cells {
        line(row);
    }
    out
}

pub fn report_json(
    args: &Args,
    sizes: &Sizes,
    rows: &[Row],
    activation: Option<&ActivationReport>,
    memory: &[MemoryReport],
    flood: &[FloodReport],
    started: SystemTime,
) -> serde_json::Value {
    let epoch_seconds = started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    json!({
        "schema_version": 2,
        "timestamp_unix_s": epoch_seconds,
        "timestamp_utc": crate::time::rfc3339(epoch_seconds.saturating_mul(1_000)),
        "machine": {
            "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "cpu_model": cpu_model(),
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
        "build": { "profile": if cfg!(debug_assertions) { "debug" } else { "release" } },
        "runtime": { "flavor": "multi_thread", "worker_threads": 2, "driver": if args.in_block_on { "block_on" } else { "task" } },
        "quick": args.quick,
        "params": sizes,
        "phases": args.only.iter().map(|phase| phase.name()).collect::<Vec<_>>(),
        "ratio": "actor median / baseline median, unless a row's ratio_of says otherwise",
        "figures": rows,
        "activation_phase": activation,
        "memory_phase": memory,
        "flood_phase": flood,
    })
}

/// The notes under the table: how its figures were taken, and what the
/// activation, memory and flood phases saw besides their rows.
pub fn print_notes(
    sizes: &Sizes,
    elapsed: Duration,
    activation: Option<&ActivationReport>,
    memory: &[MemoryReport],
    flood: &[FloodReport],
) {
    println!(
        "ratio = actor / baseline of the medians unless the row says otherwise; latencies: p50 and p99 over all \
         samples of {} rounds (activation: one pass over the processes); throughputs: median of {} rounds. \
         {} cores, {:.1} s.",
        sizes.rounds,
        sizes.rounds,
        std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        elapsed.as_secs_f64()
    );
    if let Some(report) = activation {
        println!(
            "activation actor: {} processes, idle {} ms; passivated all in {:.2} s; {}; cold calls without exactly \
             one activation: {}, warm calls that activated: {}, reads of a passivated process that activated: {}",
            count(report.processes),
            report.idle_ms,
            report.passivate_wait_seconds,
            format_stats(&report.stats_after),
            report.cold_calls_not_activating,
            report.warm_calls_activating,
            report.cold_reads_activating
        );
    }
    for report in memory {
        println!(
            "memory {}: RSS {} -> {} (registered) -> {} (called once{}) bytes for {} processes{}; registered in \
             {:.2} s, called in {:.2} s{}; idle CPU {} / {}{}",
            report.kind.name(),
            count(report.rss_before_bytes),
            count(report.rss_registered_bytes),
            count(report.rss_called_bytes),
            if report.kind == Kind::Actor { ", passivated" } else { "" },
            count(report.processes),
            report
                .rss_called_trimmed_bytes
                .zip(report.bytes_per_process_called_trimmed)
                .map(|(rss, per)| format!(
                    " (diagnostic: after malloc_trim(0) {} bytes, {} B/process)",
                    count(rss),
                    count(per.round() as u64)
                ))
                .unwrap_or_default(),
            report.register_seconds,
            report.call_seconds,
            report.passivate_wait_seconds.map(|s| format!(", all passivated {s:.2} s later")).unwrap_or_default(),
            format_percent(report.idle_cpu_percent_registered),
            format_percent(report.idle_cpu_percent_called),
            report
                .stats_called
                .as_ref()
                .map(|stats| format!(
                    "; peak live actors {}; {}",
                    count(report.peak_live_actors.unwrap_or(0)),
                    format_stats(stats)
                ))
                .unwrap_or_default()
        );
    }
    for report in flood {
        println!(
            "flood {}: {} callers{}; RSS {} -> peak {} -> {} bytes after ({} samples){}; {} completed, {} failed{}, \
             last sequence {}, {:.2} s{}",
            report.kind.name(),
            count(report.callers),
            report.mailbox_capacity.map(|c| format!(", mailbox bound {}", count(c as u64))).unwrap_or_default(),
            count(report.rss_before_bytes),
            count(report.rss_peak_bytes),
            count(report.rss_after_bytes),
            report.rss_samples,
            report
                .rss_after_trimmed_bytes
                .map(|rss| format!(" (diagnostic: after malloc_trim(0) {} bytes)", count(rss)))
                .unwrap_or_default(),
            count(report.completed),
            count(report.failed),
            report.first_error.as_ref().map(|err| format!(" (first: {err})")).unwrap_or_default(),
            count(report.last_sequence),
            report.seconds,
            report.stats.as_ref().map(|stats| format!("; {}", format_stats(stats))).unwrap_or_default()
        );
    }
}

fn format_percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}%"))
}

fn format_stats(stats: &RegistryStats) -> String {
    format!(
        "stats: live_actors {}, activations {}, passivations {}",
        count(stats.live_actors),
        count(stats.activations),
        count(stats.passivations)
    )
}
