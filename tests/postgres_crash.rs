//! A registry node killed with SIGKILL while it holds leases: another node
//! takes its processes over once the leases expire on the server's clock,
//! with higher fencing tokens, and nothing the killed node acknowledged is
//! lost.
//!
//! # How
//!
//! The parent registers [`PROCESSES`] processes in a fresh database and
//! re-executes this test binary as a child (test [`postgres_node_child`],
//! selected with `--exact`, given the database in [`CHILD_ENV`]). The
//! child connects a node, claims every process with a [`LEASE_TTL_MS`]
//! lease, prints each lease, then appends fenced events to all of them
//! from several tasks, printing each append once it is acknowledged. The
//! parent kills it with SIGKILL once [`ACKED_BEFORE_KILL`] appends are
//! acknowledged: other appends are in flight, some inside a group commit.
//!
//! The parent's node then claims each process: refused (`LeaseHeld`) until
//! the child's lease expires on the server, then granted with a higher
//! fencing token. It checks that every acknowledged append is in the log
//! with its payload, that every log is gapless, and that the child's lease
//! is fenced out: a write presenting it is refused with `LeaseFenced`.
//!
//! Nothing is timed: the parent waits for lines and for lease expiry,
//! bounded by [`PATIENCE`] only so that a hang fails.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use process_registry::testing::postgres;
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessLease, ProcessRegistration, ProcessRegistry, RegistryConfig, RegistryError,
};
use serde_json::json;

const CHILD_ENV: &str = "PROCESS_REGISTRY_PG_CRASH_CHILD";
const CHILD_TEST: &str = "postgres_node_child";
const MARKER: &str = "pg-crash ";
const PROCESSES: usize = 24;
const APPENDERS: usize = 6;
const ACKED_BEFORE_KILL: usize = 200;
const LEASE_TTL_MS: u64 = 5_000;
const PATIENCE: Duration = Duration::from_secs(120);

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types([ProcessEventType::new("step", json!({"type": "object"}))])
}

fn report(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{MARKER}{line}");
    let _ = stdout.flush();
}

/// The child: runs only when the parent sets [`CHILD_ENV`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_node_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else { return };
    let node = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("the child connects");
    let mut leases = Vec::new();
    for n in 0..PROCESSES {
        let lease = node.claim_process_lease(&format!("job-{n}"), "child", LEASE_TTL_MS).await.expect("claim");
        report(&format!("lease {}", serde_json::to_string(&lease).expect("json")));
        leases.push(lease);
    }
    report("claimed");
    let mut tasks = Vec::new();
    for appender in 0..APPENDERS {
        let node = node.clone();
        let mine: Vec<ProcessLease> = leases.iter().skip(appender).step_by(APPENDERS).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for round in 0u64.. {
                for lease in &mine {
                    let request = ProcessEventAppendRequest::new("step", json!({ "round": round }));
                    let appended = node.append_event_fenced(lease, request).await.expect("fenced append");
                    report(&format!("acked {} {} {round}", lease.process_id, appended.event.sequence));
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_after_its_leases_expire() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let node = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    for n in 0..PROCESSES {
        node.register_process(registration(&format!("job-{n}"))).await.expect("register");
    }

    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the child starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest may print its own words before the first report on a line.
            if let Some(at) = line.find(MARKER) {
                if lines.send(line[at + MARKER.len()..].to_owned()).is_err() {
                    return;
                }
            }
        }
    });

    let mut leases: HashMap<String, ProcessLease> = HashMap::new();
    let mut acked: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let started = Instant::now();
    while acked.len() < ACKED_BEFORE_KILL {
        let line = received
            .recv_timeout(PATIENCE.saturating_sub(started.elapsed()))
            .expect("the child reports before the patience runs out");
        if let Some(json) = line.strip_prefix("lease ") {
            let lease: ProcessLease = serde_json::from_str(json).expect("a lease");
            leases.insert(lease.process_id.clone(), lease);
        } else if let Some(rest) = line.strip_prefix("acked ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            acked.insert((parts[0].to_owned(), parts[1].parse().expect("sequence")), parts[2].parse().expect("round"));
        }
    }
    // SIGKILL: no shutdown, no release; commits in flight die with it.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    // Reports written before the kill but not yet read are acknowledged too.
    while let Ok(line) = received.recv_timeout(Duration::from_millis(500)) {
        if let Some(rest) = line.strip_prefix("acked ") {
            let parts: Vec<&str> = rest.split(' ').collect();
            acked.insert((parts[0].to_owned(), parts[1].parse().expect("sequence")), parts[2].parse().expect("round"));
        }
    }
    assert_eq!(leases.len(), PROCESSES, "the child claimed every process");

    let mut refused_while_live = 0;
    for n in 0..PROCESSES {
        let id = format!("job-{n}");
        let theirs = &leases[&id];
        let ours = loop {
            match node.claim_process_lease(&id, "parent", 60_000).await {
                Ok(lease) => break lease,
                Err(RegistryError::LeaseHeld { owner_id, .. }) => {
                    assert_eq!(owner_id, "child");
                    refused_while_live += 1;
                    assert!(started.elapsed() < PATIENCE, "the child's lease never expired");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(other) => panic!("claiming {id} after the kill: {other:?}"),
            }
        };
        assert!(ours.fencing_token > theirs.fencing_token, "{id}: the takeover has a higher fencing token");
        match node.append_event_fenced(theirs, ProcessEventAppendRequest::new("step", json!({"late": true}))).await {
            Err(RegistryError::LeaseFenced { current_fencing_token, .. }) => {
                assert_eq!(current_fencing_token, Some(ours.fencing_token));
            }
            other => panic!("{id}: the killed node's lease must be fenced out: {other:?}"),
        }
        let log = node.events_after(&id, 0).await.expect("log");
        assert!(log.iter().enumerate().all(|(i, event)| event.sequence == i as u64 + 1), "{id}: gapless");
        for ((process, sequence), round) in acked.range((id.clone(), 0)..=(id.clone(), u64::MAX)) {
            let event = log.get(*sequence as usize - 1).unwrap_or_else(|| panic!("{process}: acked {sequence} lost"));
            assert_eq!(event.payload["round"], json!(round), "{process}: acked {sequence} has its payload");
        }
    }
    assert!(refused_while_live > 0, "the first claims came while the child's leases were live");
    node.shutdown().await;
}
