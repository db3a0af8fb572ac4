//! The command line, and the sizes of a run it selects.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::support::subject::Kind;
use crate::Result;

/// The hidden flag the memory phase re-executes this binary with.
pub const MEMORY_PHASE_FLAG: &str = "--memory-phase";
/// The hidden flag the flood phase re-executes this binary with.
pub const FLOOD_PHASE_FLAG: &str = "--flood-phase";
/// The hidden flag each figure re-executes this binary with.
pub const FIGURE_PHASE_FLAG: &str = "--figure-phase";
/// The hidden flag the durable figures' children run with.
pub const DURABLE_PHASE_FLAG: &str = "--durable-phase";
/// The argument `cargo bench` passes, and `cargo test` does not.
const BENCH_FLAG: &str = "--bench";

const USAGE: &str = "\
usage: cargo bench --bench loadgen -- [--quick | --smoke] [--json PATH] [--rounds N] [--processes N]
                                      [--callers N] [--only PHASES] [--in-block-on] [--store sqlite|postgres]
                                      [--postgres URL]

  --quick          small sizes and 2 rounds
  --smoke          tiny sizes and 1 round: checks that every phase runs
                   (what `cargo test` runs)
  --json PATH      also write the results as JSON to PATH
  --rounds N       rounds per figure (default 5, 2 with --quick)
  --processes N    processes registered by the memory phase
                   (default 100000, 2000 with --quick; the target is stated at 1000000)
  --callers N      concurrent callers of the flood phase (default 100000, 10000 with --quick)
  --only PHASES    run only these phases, comma-separated, of:
                   figures, activation, memory, flood, listing, worker (default: all)
  --in-block-on    drive the figures from the runtime's block_on instead of
                   a task on its workers, as the body of #[tokio::main] runs
  --store sqlite   run the durable store's figures instead (group commit against
                   the fsync latency measured in the same run, reads against the
                   memory store, reopen of --processes processes, relaxed mode)
  --store postgres run the PostgreSQL figures instead (1 and 3 nodes x 64 appenders,
                   per-call cost against SQLite, cross-node wake latency), each round
                   on a fresh database of the server PROCESS_REGISTRY_TEST_POSTGRES
                   names (start one with `eval \"$(.ci/postgres start /tmp/pg)\"`)
  --postgres URL   the server for --store postgres";

/// The parts of a run `--only` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Figures,
    Activation,
    Memory,
    Flood,
    Listing,
    Worker,
}

impl Phase {
    const ALL: [Phase; 6] =
        [Phase::Figures, Phase::Activation, Phase::Memory, Phase::Flood, Phase::Listing, Phase::Worker];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Figures => "figures",
            Phase::Activation => "activation",
            Phase::Memory => "memory",
            Phase::Flood => "flood",
            Phase::Listing => "listing",
            Phase::Worker => "worker",
        }
    }
}

#[derive(Debug)]
pub struct Args {
    pub quick: bool,
    pub smoke: bool,
    pub json: Option<PathBuf>,
    pub rounds: Option<usize>,
    pub processes: Option<u64>,
    pub callers: Option<u64>,
    pub only: BTreeSet<Phase>,
    pub in_block_on: bool,
    pub memory_phase: Option<Kind>,
    pub flood_phase: Option<Kind>,
    pub figure_phase: Option<String>,
    /// `--store sqlite`: the durable figures.
    pub sqlite: bool,
    /// `--store postgres`: the several-node figures.
    pub postgres: bool,
    /// `--postgres URL`: the server for them (else `PROCESS_REGISTRY_TEST_POSTGRES`).
    pub postgres_url: Option<String>,
    /// The words after `--durable-phase` (a durable child).
    pub durable_phase: Option<Vec<String>>,
    /// Set when the run is `cargo test`'s (no `--bench`): the arguments it
    /// left to the test harness, unread.
    pub harness_args: Option<Vec<String>>,
}

fn parse_kind(flag: &str, text: &str) -> Result<Kind> {
    Kind::BOTH
        .into_iter()
        .find(|kind| kind.name() == text)
        .ok_or_else(|| format!("unknown registry kind {text:?} for {flag}").into())
}

fn parse_phases(text: &str) -> Result<BTreeSet<Phase>> {
    let mut phases = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let phase = Phase::ALL
            .into_iter()
            .find(|phase| phase.name() == name)
            .ok_or_else(|| format!("unknown phase {name:?} for --only\n{USAGE}"))?;
        phases.insert(phase);
    }
    if phases.is_empty() {
        return Err(format!("--only needs at least one phase\n{USAGE}").into());
    }
    Ok(phases)
}

impl Args {
    fn defaults() -> Self {
        Self {
            quick: false,
            smoke: false,
            json: None,
            rounds: None,
            processes: None,
            callers: None,
            only: Phase::ALL.into_iter().collect(),
            in_block_on: false,
            memory_phase: None,
            flood_phase: None,
            figure_phase: None,
            sqlite: false,
            postgres: false,
            postgres_url: None,
            durable_phase: None,
            harness_args: None,
        }
    }

    /// The arguments of this run. `cargo bench` passes `--bench`, and the
    /// children this binary spawns get a phase flag: both kinds of run read
    /// their arguments as the loadgen's flags. Without either, `cargo test`
    /// runs this bench: its arguments are the test harness's (filters,
    /// `--nocapture`, ...), so they are left unread and the run is a smoke
    /// pass of every phase.
    pub fn from_env() -> Result<Self> {
        let words: Vec<String> = std::env::args().skip(1).collect();
        let flagged = words.iter().any(|word| {
            [BENCH_FLAG, MEMORY_PHASE_FLAG, FLOOD_PHASE_FLAG, FIGURE_PHASE_FLAG, DURABLE_PHASE_FLAG]
                .contains(&word.as_str())
        });
        if flagged {
            Self::parse(words)
        } else {
            Ok(Self { smoke: true, harness_args: Some(words), ..Self::defaults() })
        }
    }

    fn parse(words: Vec<String>) -> Result<Self> {
        let mut args = Self::defaults();
        let mut words = words.into_iter();
        while let Some(word) = words.next() {
            let mut value = |flag: &str| words.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
            match word.as_str() {
                BENCH_FLAG => {}
                "--quick" => args.quick = true,
                "--smoke" => args.smoke = true,
                "--json" => args.json = Some(PathBuf::from(value("--json")?)),
                "--rounds" => args.rounds = Some(parse_number("--rounds", &value("--rounds")?)?),
                "--processes" => args.processes = Some(parse_number("--processes", &value("--processes")?)?),
                "--callers" => args.callers = Some(parse_number("--callers", &value("--callers")?)?),
                "--only" => args.only = parse_phases(&value("--only")?)?,
                "--in-block-on" => args.in_block_on = true,
                "--postgres" => args.postgres_url = Some(value("--postgres")?),
                MEMORY_PHASE_FLAG => {
                    args.memory_phase = Some(parse_kind(MEMORY_PHASE_FLAG, &value(MEMORY_PHASE_FLAG)?)?)
                }
                FIGURE_PHASE_FLAG => args.figure_phase = Some(value(FIGURE_PHASE_FLAG)?),
                DURABLE_PHASE_FLAG => {
                    args.durable_phase = Some(words.by_ref().collect());
                }
                "--store" => match value("--store")?.as_str() {
                    "sqlite" => args.sqlite = true,
                    "postgres" => args.postgres = true,
                    "memory" => {
                        args.sqlite = false;
                        args.postgres = false;
                    }
                    other => return Err(format!("unknown store {other:?} for --store\n{USAGE}").into()),
                },
                FLOOD_PHASE_FLAG => args.flood_phase = Some(parse_kind(FLOOD_PHASE_FLAG, &value(FLOOD_PHASE_FLAG)?)?),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
            }
        }
        if args.quick && args.smoke {
            return Err(format!("--quick and --smoke exclude each other\n{USAGE}").into());
        }
        Ok(args)
    }
}

fn parse_number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let cleaned: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    cleaned.parse().map_err(|err| format!("{flag} {text:?}: {err}").into())
}

/// How much work each figure does per round.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sizes {
    pub rounds: usize,
    /// Registrations per round (`register`).
    pub registrations: u64,
    /// Appends per round to one process (`append_sequential`).
    pub sequential_appends: u64,
    /// Concurrent tasks, each appending to its own process.
    pub concurrent_tasks: u64,
    /// Appends per task per round (`append_concurrent`).
    pub appends_per_task: u64,
    /// Events in the log the read figures use.
    pub log_len: u64,
    /// `events_after` from cursor 0 copies the whole log: fewer samples.
    pub head_samples: u64,
    /// Samples per round of the cheap reads.
    pub read_samples: u64,
    /// Samples per round of wake / await latency.
    pub park_samples: u64,
    /// Claim + renew + complete cycles per round.
    pub lease_samples: u64,
    /// Processes `list_processes` lists.
    pub listed_processes: u64,
    /// `list_processes` calls per round.
    pub list_samples: u64,
    /// Grants of the scope `list_handle_grants` lists.
    pub grants: u64,
    /// `list_handle_grants` calls per round.
    pub grant_samples: u64,
    /// Processes the activation phase passivates and re-activates.
    pub activation_processes: u64,
    /// Processes the memory phase registers.
    pub memory_processes: u64,
    /// Concurrent callers the flood phase sends to one process.
    pub flood_callers: u64,
    /// Processes the listing phase registers.
    pub listing_processes: u64,
    /// Of those, how many stay running (the rest are completed).
    pub listing_running: u64,
    /// `list_non_terminal` calls the listing phase times.
    pub listing_samples: u64,
    /// Processes per round of the worker phase.
    pub worker_processes: u64,
    /// The worker's concurrency, and the raw driver's tasks.
    pub worker_concurrency: u64,
}

impl Sizes {
    pub fn new(args: &Args) -> Self {
        let mut sizes = if args.smoke {
            Self {
                rounds: 1,
                registrations: 20,
                sequential_appends: 20,
                concurrent_tasks: 4,
                appends_per_task: 5,
                log_len: 100,
                head_samples: 2,
                read_samples: 10,
                park_samples: 5,
                lease_samples: 10,
                listed_processes: 100,
                list_samples: 1,
                grants: 10,
                grant_samples: 2,
                activation_processes: 20,
                memory_processes: 100,
                flood_callers: 200,
                listing_processes: 2_000,
                listing_running: 10,
                listing_samples: 5,
                worker_processes: 100,
                worker_concurrency: 16,
            }
        } else if args.quick {
            Self {
                rounds: 2,
                registrations: 200,
                sequential_appends: 300,
                concurrent_tasks: 64,
                appends_per_task: 10,
                log_len: 1_000,
                head_samples: 10,
                read_samples: 100,
                park_samples: 50,
                lease_samples: 100,
                listed_processes: 2_000,
                list_samples: 3,
                grants: 100,
                grant_samples: 20,
                activation_processes: 500,
                memory_processes: 2_000,
                flood_callers: 10_000,
                listing_processes: 20_000,
                listing_running: 20,
                listing_samples: 50,
                worker_processes: 2_000,
                worker_concurrency: 16,
            }
        } else {
            Self {
                rounds: 5,
                registrations: 5_000,
                sequential_appends: 10_000,
                concurrent_tasks: 64,
                appends_per_task: 2_000,
                log_len: 10_000,
                head_samples: 40,
                read_samples: 2_000,
                park_samples: 1_000,
                lease_samples: 2_000,
                listed_processes: 100_000,
                list_samples: 3,
                grants: 1_000,
                grant_samples: 200,
                activation_processes: 10_000,
                memory_processes: 100_000,
                flood_callers: 100_000,
                listing_processes: 1_000_000,
                listing_running: 1_000,
                listing_samples: 200,
                worker_processes: 20_000,
                worker_concurrency: 16,
            }
        };
        if let Some(rounds) = args.rounds {
            sizes.rounds = rounds.max(1);
        }
        if let Some(processes) = args.processes {
            sizes.memory_processes = processes.max(1);
        }
        if let Some(callers) = args.callers {
            sizes.flood_callers = callers.max(1);
        }
        sizes
    }
}
