//! `process-registry`: the operator's read-only view of a registry's store
//! file.
//!
//! Argument parsing and printing only: what is read, and how, is
//! [`SqliteInspector`] in the library. The file is opened read-only
//! (never the `-lock` file, never a write, never a checkpoint), so this
//! runs beside a registry that holds the file.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod json;
mod text;
mod time;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use process_registry::store::sqlite::{ProcessDetail, ProcessSummary, SqliteInspector, StatusCounts};
use process_registry::{ProcessStatusFilter, RegistryError};

/// Exit codes, as the help lists them.
const EXIT_UNREADABLE: u8 = 1;
const EXIT_VERSION: u8 = 3;
const EXIT_NO_PROCESS: u8 = 4;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the file cannot be read as a store (missing, a directory, not a database, truncated,
     unreadable), or the output cannot be written
  2  bad arguments
  3  the file has another schema version than this build reads
  4  show: the store holds no process with that id

The file is opened read-only: the tool never takes the registry's PATH-lock file, never writes the
database and never checkpoints its WAL, so it may run while a registry holds the file (it sees the
last committed state). Like any SQLite WAL reader it may create the -wal and -shm companions when
they are missing.";

const INSPECT_JSON: &str = "\
With --json, one object on stdout:
  {
    \"store\": {\"path\": STRING, \"schema_version\": INT},
    \"counts\": {\"running\": INT, \"completed\": INT, \"failed\": INT, \"cancelled\": INT, \"total\": INT},
    \"filter\": {\"status\": \"running|completed|failed|cancelled|any\", \"limit\": INT or null},
    \"processes\": [{
      \"id\": STRING, \"status\": \"running|completed|failed|cancelled\",
      \"last_sequence\": INT, \"updated_at_ms\": INT,
      \"lease\": null or {\"owner_id\": STRING, \"token_prefix\": STRING, \"fencing_token\": INT,
                        \"claimed_at_epoch_ms\": INT, \"expires_at_epoch_ms\": INT},
      \"last_fencing_token\": INT
    }],
    \"more\": BOOL
  }
Processes are listed by id; \"more\" is true when the limit left some out. Counts cover the whole file.
Times are epoch milliseconds. Lease tokens are shown by their first 8 characters only.";

const SHOW_JSON: &str = "\
With --json, one object on stdout:
  {
    \"store\": {\"path\": STRING, \"schema_version\": INT},
    \"record\": the ProcessRecord as the library serializes it,
    \"status\": \"running|completed|failed|cancelled\",
    \"last_sequence\": INT,
    \"events\": [the ProcessEvent as the library serializes it: \"sequence\", \"event_type\",
               \"occurred_at_ms\", \"payload\", \"semantics\", \"invocation\", \"process_id\"],
    \"lease\": null or {\"owner_id\": STRING, \"token_prefix\": STRING, \"fencing_token\": INT,
                      \"claimed_at_epoch_ms\": INT, \"expires_at_epoch_ms\": INT},
    \"last_fencing_token\": INT,
    \"grants\": [{\"scope_id\": STRING, \"scope\": {\"session_id\": STRING, \"agent_frame_id\"?: STRING},
                \"descriptor\": {\"kind\"?: STRING, \"label\"?: STRING}}]
  }
Events are ascending (the last N with --events N); grants are by scope id. Times are epoch
milliseconds. Lease tokens are shown by their first 8 characters only.";

/// Inspect a process-registry store file, read-only.
#[derive(Debug, Parser)]
#[command(name = "process-registry", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count the processes by status and list them (id, status, last sequence, updated time, lease).
    #[command(after_help = INSPECT_JSON)]
    Inspect(InspectArgs),
    /// Print one process: its record, its events, its lease and its grants.
    #[command(after_help = SHOW_JSON)]
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct InspectArgs {
    /// The store file (the path the registry was opened with).
    path: PathBuf,
    /// Which processes to list (the counts always cover all).
    #[arg(long, value_enum, default_value_t = StatusArg::Any)]
    status: StatusArg,
    /// List at most N processes.
    #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "all")]
    limit: u64,
    /// List every process, however many.
    #[arg(long)]
    all: bool,
    /// Print JSON (the shape is below).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The store file (the path the registry was opened with).
    path: PathBuf,
    /// The process id.
    id: String,
    /// Show only the last N events.
    #[arg(long, value_name = "N")]
    events: Option<u64>,
    /// Print JSON (the shape is below).
    #[arg(long)]
    json: bool,
}

/// `--status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatusArg {
    Running,
    Completed,
    Failed,
    Cancelled,
    Any,
}

impl StatusArg {
    fn filter(self) -> ProcessStatusFilter {
        match self {
            Self::Running => ProcessStatusFilter::Running,
            Self::Completed => ProcessStatusFilter::Completed,
            Self::Failed => ProcessStatusFilter::Failed,
            Self::Cancelled => ProcessStatusFilter::Cancelled,
            Self::Any => ProcessStatusFilter::Any,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Any => "any",
        }
    }
}

/// What `inspect` found.
struct InspectReport {
    path: String,
    schema_version: i64,
    counts: StatusCounts,
    status: StatusArg,
    limit: Option<u64>,
    processes: Vec<ProcessSummary>,
    /// The limit left some processes out.
    more: bool,
}

/// What `show` found.
struct ShowReport {
    path: String,
    schema_version: i64,
    detail: ProcessDetail,
}

/// Why a command failed, and its exit code.
enum Failure {
    Store(RegistryError),
    NoProcess { path: String, id: String },
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Self::Store(RegistryError::StoreVersion { .. }) => EXIT_VERSION,
            Self::Store(_) => EXIT_UNREADABLE,
            Self::NoProcess { .. } => EXIT_NO_PROCESS,
        }
    }

    fn message(&self) -> String {
        match self {
            // An error can quote the file (an id, an unknown status name).
            Self::Store(error) => text::clean(&error.to_string()),
            Self::NoProcess { path, id } => {
                format!("store `{}` holds no process `{}`", text::clean(path), text::clean(id))
            }
        }
    }
}

impl From<RegistryError> for Failure {
    fn from(error: RegistryError) -> Self {
        Self::Store(error)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let output = match cli.command {
        Command::Inspect(args) => inspect(&args).map(|report| {
            if args.json {
                json::render(&json::inspect(&report))
            } else {
                text::inspect(&report, time::now_ms())
            }
        }),
        Command::Show(args) => show(&args).map(|report| {
            if args.json {
                json::render(&json::show(&report))
            } else {
                text::show(&report, args.events, time::now_ms())
            }
        }),
    };
    match output {
        Ok(output) => emit(&output),
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "process-registry: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}

fn inspect(args: &InspectArgs) -> Result<InspectReport, Failure> {
    let inspector = SqliteInspector::open_read_only(&args.path)?;
    let counts = inspector.counts()?;
    let limit = if args.all { None } else { Some(args.limit) };
    // One more than asked for tells whether the limit left some out.
    let mut processes = inspector.list(args.status.filter(), limit.map(|limit| limit.saturating_add(1)))?;
    let more = limit.is_some_and(|limit| processes.len() as u64 > limit);
    if let Some(limit) = limit {
        processes.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(InspectReport {
        path: inspector.path().to_owned(),
        schema_version: inspector.schema_version(),
        counts,
        status: args.status,
        limit,
        processes,
        more,
    })
}

fn show(args: &ShowArgs) -> Result<ShowReport, Failure> {
    let inspector = SqliteInspector::open_read_only(&args.path)?;
    let detail = match args.events {
        Some(last) => inspector.process_with_last_events(&args.id, last)?,
        None => inspector.process(&args.id)?,
    };
    let detail = detail.ok_or_else(|| Failure::NoProcess { path: inspector.path().to_owned(), id: args.id.clone() })?;
    Ok(ShowReport { path: inspector.path().to_owned(), schema_version: inspector.schema_version(), detail })
}

/// Writes `output` to stdout; a closed pipe (`| head`) is not an error.
fn emit(output: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "process-registry: cannot write the output: {error}");
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
