//! Several registry nodes on one PostgreSQL database behave as one registry.
//!
//! Pins, with three nodes in this test process sharing one fresh database
//! (each test its own):
//! - racing registrations of one id across nodes end in one record: equal
//!   registrations all answer it, different ones exactly one wins;
//! - appenders on three nodes keep one gapless log of one process, with
//!   every append present once;
//! - a replay key sent on three nodes at once commits one event;
//! - a call that returned on one node is visible to a call that starts
//!   later on another: events, records, listings, waits, grants, transfers,
//!   session deletion and leases;
//! - racing claims across nodes give each process one owner, and a takeover
//!   after expiry gets a higher fencing token;
//! - leases are decided by the database server's clock: a node whose own
//!   clock runs an hour ahead cannot take over a lease that has not expired
//!   on the server;
//! - a waiter parked on one node is answered by an append on another
//!   (through LISTEN/NOTIFY), for many pairs started together, with no
//!   timeout; and after its node's LISTEN connection is killed;
//! - a session deletion that committed before a failed read is answered
//!   and leaves no deleted grant in its node's index;
//! - a repeated completion on a node answers the record as another node
//!   moved it after the end, not this node's cached one;
//! - two commits of one process planned on one version, in one batch:
//!   one commits, the other is answered `Contended`;
//! - the conformance suite passes through a node picked at random for
//!   every call.
//!
//! Nothing is timed; every wait is bounded by a generous timeout that only
//! turns a lost wakeup into a failure.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use process_registry::store::{self, Commit, ProcessChange, ProcessStore};
use process_registry::testing::{conformance, postgres, until};
use process_registry::{
    ActorProcessRegistry, ManualClock, PluginError, PostgresOptions, PostgresStore, ProcessAwaitOutput, ProcessEvent,
    ProcessEventAppendRequest, ProcessEventAppendResult, ProcessEventType, ProcessExternalRef, ProcessHandleDescriptor,
    ProcessHandleGrant, ProcessHandleGrantEntry, ProcessInput, ProcessLease, ProcessLeaseCompletion, ProcessListFilter,
    ProcessRecord, ProcessRegistration, ProcessRegistry, ProcessSessionDeleteReport, ProcessStatus, RegistryConfig,
    RegistryError, RestartIntensity, SessionScope, WaitState,
};
use serde_json::json;

/// The bound on every wait for a condition (never a measurement).
const PATIENCE: Duration = Duration::from_secs(60);
/// Cross-node wait pairs unless `PROCESS_REGISTRY_PG_WAIT_PAIRS` says otherwise.
const DEFAULT_WAIT_PAIRS: usize = 2_000;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types([ProcessEventType::new("step", json!({"type": "object"}))])
}

fn step(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("step", json!({ "n": n }))
}

/// A fresh database and `count` nodes on it, or `None` without a test server.
async fn nodes(count: usize) -> Option<Vec<ActorProcessRegistry>> {
    let server = postgres::server()?;
    let url = postgres::fresh_database(&server).await;
    let mut nodes = Vec::with_capacity(count);
    for _ in 0..count {
        nodes.push(ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("a node connects"));
    }
    Some(nodes)
}

async fn shutdown(nodes: Vec<ActorProcessRegistry>) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_across_nodes_make_one_record() {
    let Some(nodes) = nodes(3).await else { return };
    let mut tasks = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for n in 0..100 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                // Same registration for `same-*`; a node-specific one for `different-*`.
                let same = node.register_process(registration(&format!("same-{n}"))).await;
                let different = node
                    .register_process(
                        ProcessRegistration::new(
                            format!("different-{n}"),
                            ProcessInput::definition(format!("job-of-node-{index}"), serde_json::Map::new()),
                        )
                        .with_extra_event_types([ProcessEventType::new("step", json!({"type": "object"}))]),
                    )
                    .await;
                (same, different)
            }));
        }
    }
    let mut same_records = std::collections::HashMap::new();
    let mut winners = std::collections::HashMap::<String, usize>::new();
    for task in tasks {
        let (same, different) = task.await.expect("task");
        let record = same.expect("an equal registration is answered with the record");
        let created = same_records.entry(record.id.clone()).or_insert(record.created_at_ms);
        assert_eq!(*created, record.created_at_ms, "every node answers the one record of {}", record.id);
        match different {
            Ok(record) => *winners.entry(record.id).or_default() += 1,
            Err(RegistryError::RegistrationConflict { .. }) => {}
            Err(other) => panic!("a different registration got {other:?}"),
        }
    }
    assert_eq!(same_records.len(), 100);
    assert_eq!(winners.len(), 100, "every different-* id has a winner");
    assert!(winners.values().all(|&count| count == 1), "exactly one registration wins each id: {winners:?}");
    // Every node sees every process.
    for node in &nodes {
        let listed = node.list_processes(&ProcessListFilter::default()).await.expect("list");
        assert_eq!(listed.len(), 200);
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appenders_on_three_nodes_keep_one_gapless_log() {
    let Some(nodes) = nodes(3).await else { return };
    nodes[0].register_process(registration("shared")).await.expect("register");
    let per_task = 25;
    let mut tasks = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for task in 0..8u64 {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                let mut sequences = Vec::new();
                for n in 0..per_task {
                    let tag = (index as u64) * 1_000_000 + task * 1_000 + n;
                    let appended = node.append_event("shared", step(tag)).await.expect("append");
                    sequences.push(appended.event.sequence);
                }
                sequences
            }));
        }
    }
    let mut answered = BTreeSet::new();
    for task in tasks {
        for sequence in task.await.expect("task") {
            assert!(answered.insert(sequence), "sequence {sequence} answered twice");
        }
    }
    let total = 3 * 8 * per_task;
    assert_eq!(answered, (1..=total).collect::<BTreeSet<u64>>(), "the answered sequences are 1..={total}");
    for node in &nodes {
        let log = node.events_after("shared", 0).await.expect("log");
        assert_eq!(log.len() as u64, total, "every node reads the whole log");
        let tags: BTreeSet<u64> = log.iter().map(|event| event.payload["n"].as_u64().expect("n")).collect();
        assert_eq!(tags.len() as u64, total, "every append is in the log once");
        assert!(log.iter().enumerate().all(|(i, event)| event.sequence == i as u64 + 1), "gapless");
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_keys_dedupe_across_nodes() {
    let Some(nodes) = nodes(3).await else { return };
    nodes[0].register_process(registration("p")).await.expect("register");
    for round in 0..20u64 {
        let mut tasks = Vec::new();
        for node in &nodes {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                node.append_event("p", step(round).with_replay_key(format!("key-{round}"))).await.expect("append")
            }));
        }
        let mut sequences = BTreeSet::new();
        for task in tasks {
            sequences.insert(task.await.expect("task").event.sequence);
        }
        assert_eq!(sequences.len(), 1, "round {round}: every node answers the one event");
    }
    assert_eq!(nodes[2].events_after("p", 0).await.expect("log").len(), 20);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_returned_on_one_node_is_visible_on_every_node() {
    let Some(nodes) = nodes(3).await else { return };
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    a.register_process(registration("p")).await.expect("register");
    // Warm b's and c's caches first, so the checks below prove freshness.
    assert!(b.events_after("p", 0).await.expect("read").is_empty());
    assert!(c.get_process("p").await.is_some());

    a.append_event("p", step(1)).await.expect("append");
    assert_eq!(b.events_after("p", 0).await.expect("read").len(), 1, "b reads a's append");
    assert_eq!(c.recent_events("p", 5).await.expect("read").len(), 1, "c reads a's append");
    assert_eq!(c.count_events_through("p", "step", 10).await.expect("count"), 1);

    let wait = WaitState {
        kind: process_registry::WaitKind::Signal {
            name: "approval".to_owned(),
            event_type: "step".to_owned(),
            key: "approval-1".to_owned(),
            ordinal: 1,
        },
        since_ms: 1,
    };
    b.set_process_wait("p", wait).await.expect("wait");
    assert!(a.get_process("p").await.expect("record").wait.is_some(), "a sees b's wait");
    let waiting = ProcessListFilter { waiting: Some(true), ..ProcessListFilter::default() };
    assert_eq!(c.list_processes(&waiting).await.expect("list").len(), 1, "c lists b's wait");
    c.set_external_ref("p", ProcessExternalRef { backend: "tickets".to_owned(), id: "T-1".to_owned(), metadata: None })
        .await
        .expect("external ref");
    assert!(a.get_process("p").await.expect("record").external_ref.is_some(), "a sees c's external ref");

    let lease = b.claim_process_lease("p", "worker-b", 60_000).await.expect("claim");
    match a.claim_process_lease("p", "worker-a", 60_000).await {
        Err(RegistryError::LeaseHeld { owner_id, .. }) => assert_eq!(owner_id, "worker-b"),
        other => panic!("a must see b's lease: {other:?}"),
    }
    let renewed = c.renew_process_lease(&lease, 60_000).await.expect("c renews b's lease");
    a.complete_process_lease(&ProcessLeaseCompletion::from_lease(&renewed)).await.expect("a releases it");
    let next = b.claim_process_lease("p", "worker-a", 60_000).await.expect("free after a's release");
    assert!(next.fencing_token > lease.fencing_token);

    let scope = SessionScope::new("s");
    let other = SessionScope::new("t");
    a.grant_handle(&scope, "p", ProcessHandleDescriptor::default()).await.expect("grant");
    assert!(b.has_handle_grant(&scope, "p").await.expect("has"), "b sees a's grant");
    assert_eq!(c.list_handle_grants(&scope).await.expect("list").len(), 1);
    b.transfer_handle_grants(&scope, &other, &["p".to_owned()]).await.expect("transfer");
    assert!(!c.has_handle_grant(&scope, "p").await.expect("has"), "c sees b's transfer");
    assert!(a.has_handle_grant(&other, "p").await.expect("has"));
    let report = c.delete_session_process_state("t").await.expect("delete session");
    assert_eq!(report.revoked_handle_count, 1);
    assert_eq!(report.orphaned_process_ids, ["p"]);
    assert!(a.handle_grants_for_process("p").await.expect("grants").is_empty(), "a sees c's deletion");

    c.complete_process("p", ProcessAwaitOutput::success(json!({"done": true}))).await.expect("complete");
    assert!(matches!(a.get_process("p").await.expect("record").status, ProcessStatus::Completed { .. }));
    assert!(a.list_non_terminal().await.expect("worklist").is_empty(), "a's worklist drops c's completion");
    assert!(b.await_process("p").await.is_ok(), "b's await answers at once");
    match a.complete_process("p", ProcessAwaitOutput::success(json!({"done": "twice"}))).await {
        // Its terminal replay key is taken by c's completion.
        Err(RegistryError::ReplayConflict { .. } | RegistryError::AlreadyTerminal { .. }) => {}
        other => panic!("a must refuse a second completion after c's: {other:?}"),
    }
    let after = a.append_event("p", step(2)).await.expect("a non-terminal event may follow");
    assert_eq!(after.event.sequence, 3, "a plans on c's terminal event");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_claims_across_nodes_give_one_owner_and_takeovers_higher_tokens() {
    let Some(nodes) = nodes(3).await else { return };
    let ids: Vec<String> = (0..60).map(|n| format!("job-{n}")).collect();
    for id in &ids {
        nodes[0].register_process(registration(id)).await.expect("register");
    }
    let mut tasks = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for id in &ids {
            let (node, id) = (node.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                // ttl 0: the lease is expired the moment it is granted, so
                // the next claim is a takeover.
                let first = node.claim_process_lease(&id, &format!("owner-{index}"), 60_000).await;
                (id, first)
            }));
        }
    }
    let mut owners = std::collections::HashMap::<String, Vec<ProcessLease>>::new();
    for task in tasks {
        let (id, claimed) = task.await.expect("task");
        match claimed {
            Ok(lease) => owners.entry(id).or_default().push(lease),
            Err(RegistryError::LeaseHeld { .. }) => {}
            Err(other) => panic!("a racing claim got {other:?}"),
        }
    }
    assert_eq!(owners.len(), ids.len(), "every process was claimed");
    for (id, leases) in &owners {
        assert_eq!(leases.len(), 1, "{id} has one owner: {leases:?}");
        assert_eq!(leases[0].fencing_token, 1);
    }
    // Takeover after expiry: claim with ttl 0 on one node, take over on another.
    nodes[0].register_process(registration("expiring")).await.expect("register");
    let first = nodes[0].claim_process_lease("expiring", "first", 0).await.expect("claim");
    let second = nodes[1].claim_process_lease("expiring", "second", 60_000).await.expect("take over");
    assert!(second.fencing_token > first.fencing_token);
    match nodes[2].renew_process_lease(&first, 60_000).await {
        Err(RegistryError::LeaseMissingOrExpired { .. }) => {}
        other => panic!("the first owner's renewal must be refused everywhere: {other:?}"),
    }
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_follow_the_servers_clock_not_a_nodes() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let honest = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    // This node's own clock runs an hour ahead of everyone's.
    let ahead_ms =
        u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_millis())
            .expect("ms")
            + 3_600_000;
    let skewed =
        ActorProcessRegistry::connect(&url, RegistryConfig::default().with_clock(Arc::new(ManualClock::new(ahead_ms))))
            .await
            .expect("connect");
    honest.register_process(registration("p")).await.expect("register");
    let lease = honest.claim_process_lease("p", "honest", 60_000).await.expect("claim for a minute");
    match skewed.claim_process_lease("p", "skewed", 60_000).await {
        Err(RegistryError::LeaseHeld { owner_id, .. }) => assert_eq!(owner_id, "honest"),
        other => panic!("a node whose clock is an hour ahead took over an unexpired lease: {other:?}"),
    }
    honest.renew_process_lease(&lease, 60_000).await.expect("the owner still renews");
    honest.shutdown().await;
    skewed.shutdown().await;
}

fn wait_pairs() -> usize {
    std::env::var("PROCESS_REGISTRY_PG_WAIT_PAIRS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_WAIT_PAIRS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_one_node_are_answered_by_appends_on_another() {
    let Some(nodes) = nodes(2).await else { return };
    let pairs = wait_pairs();
    let (waiting_node, appending_node) = (nodes[0].clone(), nodes[1].clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(128));
    let timeouts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(pairs);
    for n in 0..pairs {
        let id = format!("pair-{n}");
        let (waiting_node, appending_node) = (waiting_node.clone(), appending_node.clone());
        let (permits, timeouts) = (Arc::clone(&permits), Arc::clone(&timeouts));
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await.expect("permit");
            appending_node.register_process(registration(&id)).await.expect("register");
            // Started together: the waiter may park before or after the append.
            let waiter = {
                let (node, id) = (waiting_node.clone(), id.clone());
                tokio::spawn(async move { tokio::time::timeout(PATIENCE, node.wait_event_after(&id, "step", 0)).await })
            };
            let appended = appending_node.append_event(&id, step(n as u64)).await.expect("append");
            match waiter.await.expect("waiter") {
                Ok(Ok(event)) => assert_eq!(event.sequence, appended.event.sequence),
                Ok(Err(error)) => panic!("the waiter of {id} failed: {error}"),
                Err(_) => {
                    timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("pair");
    }
    assert_eq!(timeouts.load(Ordering::Relaxed), 0, "waiters not answered across nodes");
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_answered_after_its_nodes_listen_connection_is_killed() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let waiting = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    let appending = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    appending.register_process(registration("p")).await.expect("register");
    let waiter = {
        let waiting = waiting.clone();
        tokio::spawn(async move { tokio::time::timeout(PATIENCE, waiting.wait_event_after("p", "step", 0)).await })
    };
    // Let the waiter park (it is answered either way; this only makes the
    // kill below land while it is parked in the common case).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(connection);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate");
    assert_eq!(killed.len(), 2, "both nodes' listeners were found");
    // Appended while the waiting node's listener may be down: its
    // notification is lost, and the reconnect must make the waiter check.
    appending.append_event("p", step(1)).await.expect("append");
    let answered = waiter.await.expect("waiter").expect("answered before the patience ran out").expect("event");
    assert_eq!(answered.sequence, 1);
    waiting.shutdown().await;
    appending.shutdown().await;
}

/// An admin connection, a fresh role with read and write rights on the
/// registry's schema, and a node connected as that role: the tests take
/// a right away from the role for a moment (drop the role afterwards with
/// `DROP OWNED BY role; DROP ROLE role`).
async fn node_of_its_own_role(url: &str, prefix: &str) -> (tokio_postgres::Client, String, ActorProcessRegistry) {
    let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(connection);
    let role = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             DO $$ BEGIN EXECUTE format('GRANT CREATE, CONNECT ON DATABASE %I TO {role}', current_database()); END $$;
             GRANT USAGE, CREATE ON SCHEMA process_registry TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA process_registry TO {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA process_registry TO {role};"
        ))
        .await
        .expect("a role for the node");
    let node =
        ActorProcessRegistry::connect(&format!("{url} user={role}"), RegistryConfig::default()).await.expect("connect");
    (admin, role, node)
}

/// A refresh that cannot read the store is tried again while a waiter is
/// parked: here the waiting node's role loses its read privilege on the
/// processes table for a moment, so the refresh that the append's notice
/// starts fails. The notice is not sent twice; the waiter is answered once
/// reads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_answered_after_a_refresh_that_failed() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let appending = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    let (admin, role, waiting) = node_of_its_own_role(&url, "waiter").await;
    appending.register_process(registration("p")).await.expect("register");
    // Twice: the retries after one outage must not stop those after the next.
    for round in 1..=2u64 {
        let waiter = {
            let waiting = waiting.clone();
            tokio::spawn(async move {
                tokio::time::timeout(PATIENCE, waiting.wait_event_after("p", "step", round - 1)).await
            })
        };
        until(|| waiting.stats().parked_waiters == 1).await;
        admin.batch_execute(&format!("REVOKE SELECT ON process_registry.processes FROM {role}")).await.expect("revoke");
        appending.append_event("p", step(round)).await.expect("append");
        // The notice arrives and its refresh fails (and so may a retry or two).
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!waiter.is_finished(), "round {round}: the waiter was answered while its node could not read");
        admin.batch_execute(&format!("GRANT SELECT ON process_registry.processes TO {role}")).await.expect("grant");
        let answered = waiter.await.expect("waiter").expect("answered before the patience ran out").expect("event");
        assert_eq!(answered.sequence, round);
    }
    waiting.shutdown().await;
    appending.shutdown().await;
    admin
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await
        .expect("drop the waiting node's role");
}

/// A session deletion whose commit landed but whose read of the records
/// after it failed: it answers the deletion, and the node's grant index
/// follows the database (before, it kept the deleted grants).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deletion_committed_before_a_failed_read_is_not_left_in_the_index() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let owner = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    let (admin, role, deleting) = node_of_its_own_role(&url, "deleting").await;
    owner.register_process(registration("p")).await.expect("register");
    let scope = SessionScope::new("s");
    deleting.grant_handle(&scope, "p", ProcessHandleDescriptor::default()).await.expect("grant");
    // The deletion's commit stays possible; the records' read after it
    // fails (it reads `declarations`, which nothing the commit runs reads).
    admin
        .batch_execute(&format!(
            "REVOKE SELECT ON process_registry.processes FROM {role};
             GRANT SELECT (id, record, status, updated_at_ms, last_sequence, lease, version)
                 ON process_registry.processes TO {role};"
        ))
        .await
        .expect("revoke");
    let deleted = deleting.delete_session_process_state("s").await;
    admin.batch_execute(&format!("GRANT SELECT ON process_registry.processes TO {role}")).await.expect("grant");
    let report = deleted.expect("the deletion committed, so it is answered");
    assert_eq!(report.revoked_handle_count, 1, "{report:?}");
    assert_eq!(deleting.list_handle_grants(&scope).await.expect("list"), vec![], "the index follows the database");
    assert!(!deleting.has_handle_grant(&scope, "p").await.expect("has"));
    assert_eq!(owner.list_handle_grants(&scope).await.expect("list on the other node"), vec![]);
    deleting.shutdown().await;
    owner.shutdown().await;
    admin.batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}")).await.expect("drop the role");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_calls_naming_an_id_no_database_can_hold_are_typed_errors() {
    let Some(nodes) = nodes(1).await else { return };
    let node = &nodes[0];
    let scope = SessionScope::new("s");
    // PostgreSQL text refuses NUL: asked, the database would fail the read.
    let nul = node.grant_handle(&scope, "p\0q", ProcessHandleDescriptor::default()).await;
    assert!(matches!(nul, Err(RegistryError::UnknownProcess { .. })), "{nul:?}");
    let nul = node.has_handle_grant(&scope, "p\0q").await;
    assert!(matches!(nul, Ok(false) | Err(RegistryError::UnknownProcess { .. })), "{nul:?}");
    let nul = node.handle_grants_for_process("p\0q").await;
    assert!(matches!(nul, Err(RegistryError::UnknownProcess { .. })), "{nul:?}");
    shutdown(nodes).await;
}

/// A quarantine is one node's: the other nodes go on writing the process,
/// and the quarantining node's reads show what they wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_quarantined_on_one_node_reads_what_another_node_appends() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let writer = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    let quarantine = RestartIntensity { max_restarts: 0, within_ms: 60_000 };
    let config = RegistryConfig::default().with_restart_intensity(quarantine);
    let reader = ActorProcessRegistry::connect(&url, config).await.expect("connect");
    writer.register_process(registration("p")).await.expect("register");
    writer.append_event("p", step(1)).await.expect("append 1");
    // One crash on `reader` quarantines `p` there.
    reader.inject_panic("p").await.expect("crash the reader's actor");
    until(|| reader.stats().quarantined == vec!["p".to_owned()]).await;
    assert_eq!(reader.events_after("p", 0).await.expect("read while quarantined").len(), 1);
    writer.append_event("p", step(2)).await.expect("append 2 on the other node");
    assert_eq!(reader.events_after("p", 0).await.expect("read again").len(), 2, "the quarantined view is current");
    reader.shutdown().await;
    writer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_completion_answers_the_record_another_node_moved_since() {
    let Some(nodes) = nodes(2).await else { return };
    let (a, b) = (&nodes[0], &nodes[1]);
    a.register_process(registration("p")).await.expect("register");
    let output = ProcessAwaitOutput::success(json!({"done": true}));
    a.complete_process("p", output.clone()).await.expect("complete on a");
    let external = ProcessExternalRef { backend: "queue".to_owned(), id: "after-the-end".to_owned(), metadata: None };
    b.set_external_ref("p", external.clone()).await.expect("an external ref on b, after the end");
    // `a` answers the repeat from its own cache (nothing to commit).
    let repeated = a.complete_process("p", output).await.expect("the repeat is idempotent");
    assert_eq!(repeated.external_ref, Some(external), "the record as the database holds it");
    assert_eq!(Some(repeated), b.get_process("p").await);
    shutdown(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_commits_of_one_process_planned_on_one_version_commit_once() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let node = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("a node connects");
    node.register_process(registration("p")).await.expect("register");
    node.shutdown().await;
    let store = PostgresStore::connect(&url, PostgresOptions::default()).await.expect("the store connects");
    let updated = |record: &ProcessRecord, env_ref: String| {
        let mut record = record.clone();
        record.env_ref = Some(env_ref);
        ProcessChange::RecordUpdated { record: Arc::new(record) }
    };
    for round in 0..20 {
        let stored = store.load_process("p").await.expect("load").expect("p");
        // Two writers that both read version `stored.version`, submitted
        // together so that they share a batch: one wins, one is told.
        let commit = |writer: u32| Commit::Process {
            process_id: "p".to_owned(),
            base_version: stored.version,
            plan: 0,
            changes: vec![updated(&stored.record, format!("{round}-{writer}"))],
        };
        let (first, second) = tokio::join!(store::commit(&store, commit(1)), store::commit(&store, commit(2)));
        let winner = match (&first, &second) {
            (Ok(_), Err(RegistryError::Contended { .. })) => 1,
            (Err(RegistryError::Contended { .. }), Ok(_)) => 2,
            other => panic!("round {round}: exactly one may commit: {other:?}"),
        };
        let after = store.load_process("p").await.expect("load").expect("p");
        assert_eq!(after.version, stored.version + 1, "round {round}: one commit");
        assert_eq!(after.record.env_ref, Some(format!("{round}-{winner}")), "round {round}: the winner's record");
    }
    store.close().await.expect("close");
}

/// Notices carry process ids and a NOTIFY payload holds under 8,000 bytes:
/// a shared store refuses an id limit whose ids might not fit, at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_store_refuses_ids_longer_than_a_notice_can_carry() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let limits = process_registry::Limits { max_id_bytes: 4_096, ..process_registry::Limits::default() };
    match ActorProcessRegistry::connect(&url, RegistryConfig::default().with_limits(limits)).await {
        Err(RegistryError::InvalidConfig { reason }) => assert!(reason.contains("max_id_bytes"), "{reason}"),
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("a 4,096-byte id limit was accepted on a shared store"),
    }
    let node = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("the default limits");
    node.shutdown().await;
}

/// Continues a stopped backend when dropped, so a failing test leaves no
/// process of the test cluster stopped.
struct Stopped(i32);

impl Stopped {
    fn signal(pid: i32, signal: &str) {
        let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        Self::signal(self.0, "-CONT");
    }
}

/// A LISTEN connection can die without a word: here its backend is
/// stopped (SIGSTOP), so the socket stays open and nothing arrives, as
/// with a connection a NAT or a failover forgot. The listener's heartbeat
/// finds it silent, replaces it, and the reconnect makes the waiter check:
/// it is answered although its notification went to the stopped backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_answered_after_its_nodes_listen_connection_goes_silent() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let appending = ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect");
    let options = PostgresOptions { listener_heartbeat: Duration::from_millis(500), ..PostgresOptions::default() };
    let waiting = ActorProcessRegistry::connect_with(
        &format!("{url} application_name=silent-node"),
        options,
        RegistryConfig::default(),
    )
    .await
    .expect("connect");
    appending.register_process(registration("p")).await.expect("register");
    let waiter = {
        let waiting = waiting.clone();
        tokio::spawn(async move { tokio::time::timeout(PATIENCE, waiting.wait_event_after("p", "step", 0)).await })
    };
    until(|| waiting.stats().parked_waiters == 1).await;
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(connection);
    let listeners = admin
        .query(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'silent-node' AND (query LIKE 'LISTEN%' OR query = 'SELECT 1')",
            &[],
        )
        .await
        .expect("find the listener");
    assert_eq!(listeners.len(), 1, "the waiting node's listener was found");
    let pid: i32 = listeners[0].get(0);
    Stopped::signal(pid, "-STOP");
    let _stopped = Stopped(pid);
    // Its notification goes to the stopped backend.
    appending.append_event("p", step(1)).await.expect("append");
    let answered = waiter.await.expect("waiter").expect("answered before the patience ran out").expect("event");
    assert_eq!(answered.sequence, 1);
    waiting.shutdown().await;
    appending.shutdown().await;
}

/// A registry that sends every call to one of its nodes, picked anew for
/// each call.
struct RandomNode {
    nodes: Vec<ActorProcessRegistry>,
    state: AtomicU64,
}

impl RandomNode {
    fn pick(&self) -> &ActorProcessRegistry {
        // xorshift64: cheap, and different on every call.
        let mut x = self.state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        &self.nodes[(x % self.nodes.len() as u64) as usize]
    }
}

#[async_trait]
impl ProcessRegistry for RandomNode {
    fn durability_tier(&self) -> process_registry::DurabilityTier {
        self.pick().durability_tier()
    }
    async fn register_process(&self, registration: ProcessRegistration) -> Result<ProcessRecord, PluginError> {
        self.pick().register_process(registration).await
    }
    async fn set_external_ref(&self, id: &str, external_ref: ProcessExternalRef) -> Result<ProcessRecord, PluginError> {
        self.pick().set_external_ref(id, external_ref).await
    }
    async fn grant_handle(
        &self,
        scope: &SessionScope,
        id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> Result<ProcessHandleGrant, PluginError> {
        self.pick().grant_handle(scope, id, descriptor).await
    }
    async fn revoke_handle(&self, scope: &SessionScope, id: &str) -> Result<(), PluginError> {
        self.pick().revoke_handle(scope, id).await
    }
    async fn transfer_handle_grants(
        &self,
        from: &SessionScope,
        to: &SessionScope,
        ids: &[String],
    ) -> Result<(), PluginError> {
        self.pick().transfer_handle_grants(from, to, ids).await
    }
    async fn list_handle_grants(&self, scope: &SessionScope) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        self.pick().list_handle_grants(scope).await
    }
    async fn list_live_handle_grants(&self, scope: &SessionScope) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        self.pick().list_live_handle_grants(scope).await
    }
    async fn has_handle_grant(&self, scope: &SessionScope, id: &str) -> Result<bool, PluginError> {
        self.pick().has_handle_grant(scope, id).await
    }
    async fn handle_grants_for_process(&self, id: &str) -> Result<Vec<ProcessHandleGrant>, PluginError> {
        self.pick().handle_grants_for_process(id).await
    }
    async fn delete_session_process_state(&self, session_id: &str) -> Result<ProcessSessionDeleteReport, PluginError> {
        self.pick().delete_session_process_state(session_id).await
    }
    async fn append_event(
        &self,
        id: &str,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        self.pick().append_event(id, request).await
    }
    async fn events_after(&self, id: &str, after: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        self.pick().events_after(id, after).await
    }
    async fn count_events_through(&self, id: &str, event_type: &str, up_to: u64) -> Result<u64, PluginError> {
        self.pick().count_events_through(id, event_type, up_to).await
    }
    async fn recent_events(&self, id: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        self.pick().recent_events(id, limit).await
    }
    async fn wake_events_after(&self, id: &str, after: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        self.pick().wake_events_after(id, after).await
    }
    async fn wait_event_after(&self, id: &str, event_type: &str, after: u64) -> Result<ProcessEvent, PluginError> {
        self.pick().wait_event_after(id, event_type, after).await
    }
    async fn await_process(&self, id: &str) -> Result<ProcessAwaitOutput, PluginError> {
        self.pick().await_process(id).await
    }
    async fn complete_process(&self, id: &str, output: ProcessAwaitOutput) -> Result<ProcessRecord, PluginError> {
        self.pick().complete_process(id, output).await
    }
    async fn set_process_wait(&self, id: &str, wait: WaitState) -> Result<ProcessRecord, PluginError> {
        self.pick().set_process_wait(id, wait).await
    }
    async fn clear_process_wait(&self, id: &str) -> Result<ProcessRecord, PluginError> {
        self.pick().clear_process_wait(id).await
    }
    async fn get_process(&self, id: &str) -> Option<ProcessRecord> {
        self.pick().get_process(id).await
    }
    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError> {
        self.pick().list_processes(filter).await
    }
    async fn ack_wake(&self, id: &str, sequence: u64) -> Result<(), PluginError> {
        self.pick().ack_wake(id, sequence).await
    }
    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError> {
        self.pick().list_non_terminal().await
    }
    async fn claim_process_lease(&self, id: &str, owner: &str, ttl_ms: u64) -> Result<ProcessLease, PluginError> {
        self.pick().claim_process_lease(id, owner, ttl_ms).await
    }
    async fn renew_process_lease(&self, lease: &ProcessLease, ttl_ms: u64) -> Result<ProcessLease, PluginError> {
        self.pick().renew_process_lease(lease, ttl_ms).await
    }
    async fn complete_process_lease(&self, completion: &ProcessLeaseCompletion) -> Result<(), PluginError> {
        self.pick().complete_process_lease(completion).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_holds_through_a_random_node_for_every_call() {
    let Some(server) = postgres::server() else { return };
    let seed = AtomicU64::new(1);
    conformance::run(|| {
        let server = server.clone();
        let seed = seed.fetch_add(1, Ordering::Relaxed);
        async move {
            let url = postgres::fresh_database(&server).await;
            let mut nodes = Vec::new();
            for _ in 0..3 {
                nodes.push(ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect"));
            }
            Arc::new(RandomNode { nodes, state: AtomicU64::new(seed) }) as Arc<dyn ProcessRegistry>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connecting_together_migrate_the_schema_once() {
    let Some(server) = postgres::server() else { return };
    let url = postgres::fresh_database(&server).await;
    let mut connecting = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        connecting
            .push(tokio::spawn(async move { ActorProcessRegistry::connect(&url, RegistryConfig::default()).await }));
    }
    let mut nodes = Vec::new();
    for node in connecting {
        nodes.push(node.await.expect("task").expect("every node connects"));
    }
    assert_eq!(nodes[0].durability_tier(), process_registry::DurabilityTier::Durable);
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("admin");
    tokio::spawn(connection);
    let applied: Vec<i64> = admin
        .query("SELECT version FROM process_registry.migrations ORDER BY version", &[])
        .await
        .expect("migrations")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let every: Vec<i64> = (1..=process_registry::store::POSTGRES_SCHEMA_VERSION).collect();
    assert_eq!(applied, every, "each migration applied once, in order");
    shutdown(nodes).await;

    // A database a newer build migrated is refused before anything is written.
    admin
        .execute("INSERT INTO process_registry.migrations (version, name) VALUES (999, 'from the future')", &[])
        .await
        .expect("a newer version");
    match ActorProcessRegistry::connect(&url, RegistryConfig::default()).await {
        Err(RegistryError::StoreVersion { found: 999, supported, .. }) => {
            assert_eq!(supported, process_registry::store::POSTGRES_SCHEMA_VERSION);
        }
        other => panic!("a newer schema must be refused: {:?}", other.map(|_| "a node")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_changes_racing_on_three_nodes_all_land() {
    let Some(nodes) = nodes(3).await else { return };
    for n in 0..30 {
        nodes[0].register_process(registration(&format!("g-{n}"))).await.expect("register");
    }
    // Every node grants its share into one scope at once: each commit is
    // fenced by the grants' version, so the losers reload and plan again.
    let scope = SessionScope::new("shared-scope");
    let mut tasks = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        for n in (index..30).step_by(3) {
            let (node, scope) = (node.clone(), scope.clone());
            tasks.push(tokio::spawn(async move {
                node.grant_handle(&scope, &format!("g-{n}"), ProcessHandleDescriptor::default()).await
            }));
        }
    }
    for task in tasks {
        task.await.expect("task").expect("every grant lands");
    }
    for node in &nodes {
        assert_eq!(node.list_handle_grants(&scope).await.expect("list").len(), 30, "every node lists all 30");
    }
    // A transfer and racing revokes: the transfer is all or nothing.
    let target = SessionScope::new("target");
    let moved: Vec<String> = (0..10).map(|n| format!("g-{n}")).collect();
    let transfer = {
        let (node, scope, target, moved) = (nodes[1].clone(), scope.clone(), target.clone(), moved.clone());
        tokio::spawn(async move { node.transfer_handle_grants(&scope, &target, &moved).await })
    };
    let revoke = {
        let (node, scope) = (nodes[2].clone(), scope.clone());
        tokio::spawn(async move { node.revoke_handle(&scope, "g-5").await })
    };
    let transferred = transfer.await.expect("task");
    revoke.await.expect("task").expect("revoke");
    let in_target = nodes[0].list_handle_grants(&target).await.expect("list").len();
    match transferred {
        Ok(()) => assert_eq!(in_target, 10, "the transfer moved all ten"),
        Err(RegistryError::HandleNotGranted { .. }) => assert_eq!(in_target, 0, "a refused transfer moved none"),
        Err(other) => panic!("transfer: {other:?}"),
    }
    shutdown(nodes).await;
}
