//! What the loadgen reads from the system and asks of it: RSS and CPU time
//! of this process (from `/proc`), the CPU model, the allocator's trim, and
//! running this binary again as a child process.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::Result;

fn getconf(name: &str) -> Option<u64> {
    Command::new("getconf")
        .arg(name)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
}

pub fn page_size() -> u64 {
    getconf("PAGESIZE").unwrap_or(4096)
}

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes(page_size: u64) -> Result<u64> {
    let statm =
        std::fs::read_to_string("/proc/self/statm").map_err(|err| format!("reading /proc/self/statm: {err}"))?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("/proc/self/statm has no resident field")?
        .parse()
        .map_err(|err| format!("/proc/self/statm resident field: {err}"))?;
    Ok(resident * page_size)
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = getconf("CLK_TCK").unwrap_or(100).max(1);
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Sleeps `period` and returns the CPU this process used meanwhile, as a
/// percentage of one core (`None` where `/proc/self/stat` is unreadable).
pub async fn idle_cpu_percent(period: Duration) -> Option<f64> {
    let before = cpu_time();
    let start = Instant::now();
    tokio::time::sleep(period).await;
    let used = cpu_time()?.checked_sub(before?)?;
    Some(100.0 * used.as_secs_f64() / start.elapsed().as_secs_f64())
}

/// Asks glibc's allocator to return its free heap memory to the OS
/// (`malloc_trim(0)`); false where that is not available. A diagnostic
/// only: RSS after it tells memory still in use from memory the allocator
/// merely keeps cached after it was freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim_heap() -> bool {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: `malloc_trim` takes no pointer, touches only the allocator's
    // own state under its locks, and is safe to call from any thread.
    unsafe { malloc_trim(0) };
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim_heap() -> bool {
    false
}

/// A thread that reads RSS every `every` and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(u64, u64), String>>,
}

impl RssSampler {
    pub fn start(page_size: u64, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            loop {
                // One last sample after the stop request.
                let last = stopping.load(Ordering::Acquire);
                peak = peak.max(rss_bytes(page_size).map_err(|err| err.to_string())?);
                samples += 1;
                if last {
                    return Ok((peak, samples));
                }
                std::thread::sleep(every);
            }
        });
        Self { stop, thread }
    }

    /// Stops sampling: (peak RSS, samples taken).
    pub fn finish(self) -> Result<(u64, u64)> {
        self.stop.store(true, Ordering::Release);
        Ok(self.thread.join().map_err(|_| "the RSS sampler panicked")??)
    }
}

pub fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// Runs this binary with `args`; returns the JSON its stdout line starting
/// with `prefix` carries.
pub fn run_child<T: for<'de> Deserialize<'de>>(what: &str, args: &[String], prefix: &str) -> Result<T> {
    let exe = std::env::current_exe().map_err(|err| format!("locating this executable: {err}"))?;
    let output = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| format!("running the {what} ({}): {err}", exe.display()))?;
    if !output.status.success() {
        return Err(format!("the {what} failed: {}", output.status).into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .ok_or_else(|| format!("the {what} printed no report"))?;
    Ok(serde_json::from_str(line).map_err(|err| format!("the {what} report: {err}"))?)
}
