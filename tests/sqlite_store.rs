//! The SQLite store behind the seam, driven directly: registration is
//! insert-if-absent, a commit a constraint refuses fails alone (the others
//! of its batch commit, and the store is not poisoned), so does an append
//! that does not follow the stored log, and so does every later commit
//! planned on a refused one (its plan), and reads see every
//! commit answered before them. Concurrent callers share transactions
//! (so fsyncs), and a lone sequential caller gets exactly one per call.

use std::sync::Arc;

use process_registry::store::{self, Commit, Committed, ProcessChange, ProcessStore};
use process_registry::{
    ActorProcessRegistry, ProcessEventAppendRequest, ProcessInput, ProcessRegistration, ProcessRegistry,
    RegistryConfig, RegistryError, SqliteOptions, SqliteStore,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_insert_if_absent_and_a_refused_commit_fails_alone() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    let registration = ProcessRegistration::new("p", ProcessInput::definition("job", Default::default()));
    let record = registry.register_process(registration).await.expect("register");
    registry.append_event("p", ProcessEventAppendRequest::new("process.waiting", json!({}))).await.expect("append");
    registry.shutdown().await;

    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("the store opens");
    let stored = store.load_process("p").await.expect("load").expect("p is stored");
    assert_eq!(*stored.record, record.clone().with_updated(stored.record.updated_at_ms));
    assert_eq!(stored.events.len(), 1);

    // Insert-if-absent: a second registration of `p` records nothing and
    // answers with the stored record.
    let mut other = record.clone();
    other.registration_hash = "another".to_owned();
    let answer = store::commit(&store, Commit::Register { record: Arc::new(other) }).await;
    match answer {
        Ok(Committed::AlreadyRegistered(existing)) => assert_eq!(existing.registration_hash, record.registration_hash),
        other => panic!("a second registration: {other:?}"),
    }

    // An append of the stored event again, as sequence `sequence`, planned
    // on its own: each takes a new plan (plans only rise), so none is
    // refused for resting on another.
    let plans = std::cell::Cell::new(0);
    let appending = |sequence: u64| {
        plans.set(plans.get() + 1);
        let mut event = (*stored.events[0]).clone();
        event.sequence = sequence;
        Commit::Process {
            process_id: "p".to_owned(),
            base_version: 0,
            plan: plans.get(),
            changes: vec![ProcessChange::Appended {
                event: Arc::new(event),
                replay: None,
                record: Arc::clone(&stored.record),
            }],
        }
    };
    // Two commits submitted together: one appends sequence 1 again (the
    // store refuses it), the other a new event 2. The first fails alone.
    let (duplicate, next) = (appending(1), appending(2));
    let (refused, appended) = tokio::join!(store::commit(&store, duplicate), store::commit(&store, next));
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "the duplicate sequence: {refused:?}");
    assert_eq!(appended, Ok(Committed::Done), "the other commit of the batch");
    assert!(!store.is_poisoned(), "a refused commit does not poison the store");
    let reloaded = store.load_process("p").await.expect("load").expect("p");
    assert_eq!(reloaded.events.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![1, 2]);

    // An append planned on a commit that failed (sequence 4 while the file
    // ends at 2) is refused alone too, and the log keeps no gap.
    let (gap, third) = tokio::join!(store::commit(&store, appending(4)), store::commit(&store, appending(3)));
    match gap {
        Err(RegistryError::Storage { message, .. }) => assert!(message.contains("does not follow"), "{message}"),
        other => panic!("an append after a gap: {other:?}"),
    }
    assert_eq!(third, Ok(Committed::Done), "the append that follows the log");
    assert!(!store.is_poisoned(), "a refused append does not poison the store");
    let reloaded = store.load_process("p").await.expect("load").expect("p");
    assert_eq!(reloaded.events.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    store.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_planned_on_a_refused_commit_is_refused_with_it() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("open");
    let registration = ProcessRegistration::new("p", ProcessInput::definition("job", Default::default()));
    registry.register_process(registration).await.expect("register");
    registry.append_event("p", ProcessEventAppendRequest::new("process.waiting", json!({}))).await.expect("append");
    registry.shutdown().await;

    let store = SqliteStore::open(&path, SqliteOptions::default()).expect("the store opens");
    let stored = store.load_process("p").await.expect("load").expect("p is stored");
    let commit = |plan: u64, change: ProcessChange| Commit::Process {
        process_id: "p".to_owned(),
        base_version: 0,
        plan,
        changes: vec![change],
    };
    let marked = |env_ref: &str| {
        let mut record = (*stored.record).clone();
        record.env_ref = Some(env_ref.to_owned());
        ProcessChange::RecordUpdated { record: Arc::new(record) }
    };
    // Plan 7: an append the store refuses (sequence 1 is taken), then a
    // record update and a lease planned on top of it.
    let duplicate = ProcessChange::Appended {
        event: Arc::clone(&stored.events[0]),
        replay: None,
        record: Arc::clone(&stored.record),
    };
    let mut lease = stored.lease.clone();
    lease.last_fencing_token += 5;
    // Submitted together, as an actor pipelines them: one batch, most
    // likely (the refusal is remembered across batches too).
    let (refused, on_top, leased) = tokio::join!(
        store::commit(&store, commit(7, duplicate)),
        store::commit(&store, commit(7, marked("planned on the refused append"))),
        store::commit(&store, commit(7, ProcessChange::LeaseUpdated { lease: lease.clone() })),
    );
    match refused {
        Err(RegistryError::Storage { message, .. }) => assert!(!message.contains("planned on"), "{message}"),
        other => panic!("the duplicate sequence: {other:?}"),
    }
    for (what, answer) in [("a record update", on_top), ("a lease", leased)] {
        match answer {
            Err(RegistryError::Storage { message, .. }) => assert!(message.contains("planned on"), "{what}: {message}"),
            other => panic!("{what} of the refused plan: {other:?}"),
        }
    }
    // And in a later batch.
    let late = store::commit(&store, commit(7, marked("late"))).await;
    assert!(matches!(late, Err(RegistryError::Storage { .. })), "a later commit of the refused plan: {late:?}");
    let reloaded = store.load_process("p").await.expect("load").expect("p");
    assert_eq!(reloaded.record, stored.record, "nothing of plan 7 was written");
    assert_eq!(reloaded.lease, stored.lease, "nothing of plan 7 was written");

    // The actor's next plan (after its rollback) commits.
    assert_eq!(store::commit(&store, commit(8, marked("replanned"))).await, Ok(Committed::Done));
    assert!(!store.is_poisoned(), "refused plans do not poison the store");
    let reloaded = store.load_process("p").await.expect("load").expect("p");
    assert_eq!(reloaded.record.env_ref.as_deref(), Some("replanned"));
    store.close().await.expect("close");
}

trait WithUpdated {
    fn with_updated(self, updated_at_ms: u64) -> Self;
}

impl WithUpdated for process_registry::ProcessRecord {
    fn with_updated(mut self, updated_at_ms: u64) -> Self {
        self.updated_at_ms = updated_at_ms;
        self
    }
}

/// `appenders` tasks appending `each` events to processes of their own
/// (registered first); the transactions the store counted meanwhile.
async fn transactions_for(appenders: u64, each: u64) -> u64 {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = Arc::new(SqliteStore::open(directory.path().join("r.db"), SqliteOptions::default()).expect("open"));
    let config = RegistryConfig::default().with_store(Arc::clone(&store) as Arc<dyn ProcessStore>);
    let registry = ActorProcessRegistry::start(config).await.expect("start");
    for task in 0..appenders {
        let registration =
            ProcessRegistration::new(format!("p{task}"), ProcessInput::definition("job", Default::default()));
        registry.register_process(registration).await.expect("register");
    }
    let before = store.transactions();
    let tasks: Vec<_> = (0..appenders)
        .map(|task| {
            let registry = registry.clone();
            tokio::spawn(async move {
                for n in 0..each {
                    let request = ProcessEventAppendRequest::new("process.waiting", json!({ "n": n }));
                    registry.append_event(&format!("p{task}"), request).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an appender");
    }
    let transactions = store.transactions() - before;
    for task in 0..appenders {
        assert_eq!(registry.events_after(&format!("p{task}"), 0).await.expect("log").len() as u64, each);
    }
    registry.shutdown().await;
    transactions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_transactions_and_a_lone_one_gets_one_per_call() {
    // 32 callers each waiting on its own append: while one transaction
    // commits, the others queue behind it and share the next.
    let shared = transactions_for(32, 20).await;
    // One per call would be 640; here runs measure 65-110.
    assert!(shared * 2 <= 32 * 20, "640 appends took {shared} transactions");
    // One caller: one transaction (one fsync) per call, never fewer
    // calls than transactions, and no extra ones.
    assert_eq!(transactions_for(1, 30).await, 30);
}
