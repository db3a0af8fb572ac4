//! The `process-registry` binary against a file a real registry wrote:
//! while the registry still holds it, and after `shutdown()`; and its exit
//! codes for files it cannot read.

use std::path::Path;
use std::process::Output;

use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessHandleDescriptor,
    ProcessInput, ProcessLease, ProcessRegistration, ProcessRegistry, RegistryConfig, SessionScope,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_process-registry");

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN).args(args).output().await.expect("run process-registry")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("utf-8 stderr")
}

/// Runs the binary, expects success, returns its stdout.
async fn ok(args: &[&str]) -> String {
    let output = run(args).await;
    assert_eq!(output.status.code(), Some(0), "{args:?} failed: {}", stderr(&output));
    stdout(&output)
}

async fn ok_json(args: &[&str]) -> Value {
    let text = ok(args).await;
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{args:?} printed no JSON ({error}): {text}"))
}

/// Runs the binary, expects exit `code`, returns its stderr.
async fn fails(args: &[&str], code: i32) -> String {
    let output = run(args).await;
    assert_eq!(output.status.code(), Some(code), "{args:?}: {}{}", stdout(&output), stderr(&output));
    assert!(output.stdout.is_empty(), "{args:?} printed to stdout on failure");
    stderr(&output)
}

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("build", Default::default()))
        .with_extra_event_types([ProcessEventType::new("progress", json!({"type": "object"}))])
}

fn progress(percent: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("progress", json!({"percent": percent}))
}

/// Five processes: `job-a` running with three events, a live lease and two
/// grants; `job-b` completed, `job-c` failed, `job-d` cancelled; `job-e`
/// running with an empty log.
async fn populate(registry: &ActorProcessRegistry) -> ProcessLease {
    for id in ["job-a", "job-b", "job-c", "job-d", "job-e"] {
        registry.register_process(registration(id)).await.expect("register");
    }
    for percent in [10, 50, 90] {
        registry.append_event("job-a", progress(percent)).await.expect("append");
    }
    let lease = registry.claim_process_lease("job-a", "worker-1", 3_600_000).await.expect("claim");
    let monitor = ProcessHandleDescriptor { kind: Some("monitor".to_owned()), label: Some("Build A".to_owned()) };
    registry.grant_handle(&SessionScope::new("s1"), "job-a", monitor).await.expect("grant");
    registry
        .grant_handle(&SessionScope::with_frame("s2", "f1"), "job-a", ProcessHandleDescriptor::default())
        .await
        .expect("grant to a frame");
    registry.append_event("job-b", progress(100)).await.expect("append");
    registry.complete_process("job-b", ProcessAwaitOutput::success(json!("done"))).await.expect("complete");
    registry.complete_process("job-c", ProcessAwaitOutput::failure("boom", "it broke")).await.expect("fail");
    registry.complete_process("job-d", ProcessAwaitOutput::cancelled("not needed")).await.expect("cancel");
    lease
}

fn ids(listing: &Value) -> Vec<&str> {
    listing["processes"].as_array().expect("processes").iter().map(|p| p["id"].as_str().expect("id")).collect()
}

fn sequences(shown: &Value) -> Vec<u64> {
    shown["events"].as_array().expect("events").iter().map(|e| e["sequence"].as_u64().expect("sequence")).collect()
}

/// What every run over the populated file must print, held or not;
/// `job_a_events` is job-a's log length by then.
async fn check_inspect_and_show(path: &str, lease: &ProcessLease, job_a_events: u64) {
    let text = ok(&["inspect", path]).await;
    assert!(text.contains("processes: 5 (running 2, completed 1, failed 1, cancelled 1)"), "{text}");
    for id in ["job-a", "job-b", "job-c", "job-d", "job-e"] {
        assert!(text.contains(id), "{id} not listed: {text}");
    }
    let job_a = text.lines().find(|line| line.contains("job-a")).expect("job-a's line");
    assert!(job_a.contains("running") && job_a.contains("worker-1") && job_a.contains("live"), "{job_a}");
    assert!(!text.contains(&lease.lease_token), "the whole lease token was printed");

    let listing = ok_json(&["inspect", path, "--json"]).await;
    assert_eq!(listing["store"]["schema_version"], json!(process_registry::store::sqlite::SQLITE_SCHEMA_VERSION));
    assert_eq!(listing["counts"], json!({"running": 2, "completed": 1, "failed": 1, "cancelled": 1, "total": 5}));
    assert_eq!(ids(&listing), ["job-a", "job-b", "job-c", "job-d", "job-e"]);
    assert_eq!(listing["more"], json!(false));
    let first = &listing["processes"][0];
    assert_eq!(first["status"], json!("running"));
    assert_eq!(first["last_sequence"], json!(job_a_events));
    assert_eq!(
        first["lease"],
        json!({
            "owner_id": "worker-1",
            "token_prefix": lease.lease_token.get(..8).expect("a long token"),
            "fencing_token": lease.fencing_token,
            "claimed_at_epoch_ms": lease.claimed_at_epoch_ms,
            "expires_at_epoch_ms": lease.expires_at_epoch_ms,
        })
    );
    assert_eq!(first["last_fencing_token"], json!(lease.fencing_token));
    let statuses: Vec<&str> =
        listing["processes"].as_array().expect("processes").iter().map(|p| p["status"].as_str().expect("s")).collect();
    assert_eq!(statuses, ["running", "completed", "failed", "cancelled", "running"]);
    assert_eq!(listing["processes"][1]["last_sequence"], json!(2));
    assert_eq!(listing["processes"][1]["lease"], Value::Null);

    let running = ok_json(&["inspect", path, "--status", "running", "--limit", "1", "--json"]).await;
    assert_eq!(ids(&running), ["job-a"]);
    assert_eq!(running["more"], json!(true));
    assert_eq!(running["filter"], json!({"status": "running", "limit": 1}));
    assert_eq!(running["counts"]["total"], json!(5), "the counts cover the whole file");
    let failed = ok_json(&["inspect", path, "--status", "failed", "--all", "--json"]).await;
    assert_eq!(ids(&failed), ["job-c"]);
    assert_eq!(failed["filter"]["limit"], Value::Null);
    let limited = ok(&["inspect", path, "--limit", "2"]).await;
    assert!(limited.contains("job-b") && !limited.contains("job-c") && limited.contains("--all"), "{limited}");

    let shown = ok(&["show", path, "job-a"]).await;
    assert!(shown.starts_with("process job-a\n"), "{shown}");
    assert!(shown.contains("worker-1"), "{shown}");
    assert!(shown.contains(&format!("{}…", lease.lease_token.get(..8).expect("prefix"))), "{shown}");
    assert!(!shown.contains(&lease.lease_token), "the whole lease token was printed");
    assert!(shown.contains("session:s1") && shown.contains("session:s2/frame:f1"), "{shown}");
    assert!(shown.contains(r#"{"kind":"monitor","label":"Build A"}"#), "{shown}");
    assert!(shown.contains(&format!("events ({job_a_events})")), "{shown}");
    assert!(shown.contains(r#"{"percent":10}"#) && shown.contains("progress"), "{shown}");

    let detail = ok_json(&["show", path, "job-a", "--json"]).await;
    assert_eq!(detail["record"]["id"], json!("job-a"));
    assert_eq!(detail["status"], json!("running"));
    assert_eq!(detail["last_sequence"], json!(job_a_events));
    assert_eq!(sequences(&detail), (1..=job_a_events).collect::<Vec<_>>());
    assert_eq!(detail["events"][0]["event_type"], json!("progress"));
    assert_eq!(detail["events"][0]["payload"], json!({"percent": 10}));
    assert!(detail["events"][0]["occurred_at_ms"].as_u64().is_some());
    assert_eq!(detail["lease"]["owner_id"], json!("worker-1"));
    assert_eq!(detail["lease"]["fencing_token"], json!(lease.fencing_token));
    assert_eq!(detail["last_fencing_token"], json!(lease.fencing_token));
    assert_eq!(
        detail["grants"],
        json!([
            {"scope_id": "session:s1", "scope": {"session_id": "s1"},
             "descriptor": {"kind": "monitor", "label": "Build A"}},
            {"scope_id": "session:s2/frame:f1", "scope": {"session_id": "s2", "agent_frame_id": "f1"},
             "descriptor": {}},
        ])
    );

    let tail = ok_json(&["show", path, "job-a", "--events", "2", "--json"]).await;
    assert_eq!(sequences(&tail), [job_a_events - 1, job_a_events]);
    assert!(ok(&["show", path, "job-a", "--events", "2"])
        .await
        .contains(&format!("events (last 2 of {job_a_events})")));

    let completed = ok_json(&["show", path, "job-b", "--json"]).await;
    assert_eq!(completed["status"], json!("completed"));
    assert_eq!(completed["record"]["status"]["await_output"], json!({"kind": "success", "value": "done"}));
    assert_eq!(completed["lease"], Value::Null);
    assert_eq!(completed["grants"], json!([]));
    assert_eq!(sequences(&completed), [1, 2]);
    assert!(ok(&["show", path, "job-c"]).await.contains("failed"));

    let missing = fails(&["show", path, "no-such-job"], 4).await;
    assert!(missing.contains("no-such-job"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspects_a_store_while_its_registry_holds_it_and_after_shutdown() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let shown_path = path.to_str().expect("a UTF-8 path");
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    let lease = populate(&registry).await;

    // Held: the registry has the lock, and the tool reads beside it.
    check_inspect_and_show(shown_path, &lease, 3).await;
    // The registry is unaffected, and the next run sees its next commit.
    registry.append_event("job-a", progress(95)).await.expect("append while inspected");
    let detail = ok_json(&["show", shown_path, "job-a", "--json"]).await;
    assert_eq!(sequences(&detail), [1, 2, 3, 4]);

    registry.shutdown().await;
    let before = std::fs::read(&path).expect("read the store");
    check_inspect_and_show(shown_path, &lease, 4).await;
    assert_eq!(std::fs::read(&path).expect("read the store"), before, "the tool wrote to the file");

    // The tool never took the lock: a registry opens the file and has it all.
    let reopened = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("reopen");
    assert_eq!(reopened.events_after("job-a", 0).await.expect("events").len(), 4);
    reopened.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_it_cannot_read_exit_non_zero_with_a_message() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let shown = |path: &Path| path.to_str().expect("a UTF-8 path").to_owned();

    let missing = shown(&directory.path().join("missing.db"));
    for args in [vec!["inspect", missing.as_str()], vec!["show", missing.as_str(), "job-a"]] {
        let message = fails(&args, 1).await;
        assert!(message.contains("cannot open store") && message.contains("missing.db"), "{message}");
    }
    assert!(!directory.path().join("missing.db").exists(), "the tool created the missing file");

    let garbage = directory.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a_u8; 4096]).expect("write garbage");
    let message = fails(&["inspect", &shown(&garbage)], 1).await;
    assert!(message.contains("not a database"), "{message}");
    assert!(fails(&["show", &shown(&garbage), "job-a", "--json"], 1).await.contains("not a database"));

    let folder = shown(directory.path());
    assert!(fails(&["inspect", &folder], 1).await.contains("directory"));

    let future = directory.path().join("future.db");
    let registry = ActorProcessRegistry::open(&future, RegistryConfig::default()).await.expect("open");
    registry.register_process(registration("job-a")).await.expect("register");
    registry.shutdown().await;
    rusqlite::Connection::open(&future)
        .and_then(|connection| connection.pragma_update(None, "user_version", 99))
        .expect("set user_version 99");
    let message = fails(&["inspect", &shown(&future)], 3).await;
    let supported = format!("reads version {}", process_registry::store::sqlite::SQLITE_SCHEMA_VERSION);
    assert!(message.contains("schema version 99") && message.contains(&supported), "{message}");
    assert_eq!(fails(&["show", &shown(&future), "job-a"], 3).await, message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_exit_2_and_the_help_documents_the_json_and_the_exit_codes() {
    let output = run(&["inspect", "x.db", "--status", "paused"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("paused"));
    assert_eq!(run(&["inspect", "x.db", "--limit", "1", "--all"]).await.status.code(), Some(2));
    assert_eq!(run(&["show", "x.db"]).await.status.code(), Some(2));

    let help = ok(&["--help"]).await;
    assert!(help.contains("inspect") && help.contains("show") && help.contains("Exit codes"), "{help}");
    assert!(help.contains("read-only"), "{help}");
    let inspect_help = ok(&["inspect", "--help"]).await;
    assert!(inspect_help.contains("--json") && inspect_help.contains("\"counts\""), "{inspect_help}");
    let show_help = ok(&["show", "--help"]).await;
    assert!(show_help.contains("--events") && show_help.contains("token_prefix"), "{show_help}");
}
