//! The SQLite store behind the seam, driven directly: registration is
//! insert-if-absent, a commit a constraint refuses fails alone (the others
//! of its batch commit, and the store is not poisoned), and reads see every
//! commit answered before them.

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

    // Two commits submitted together: one appends sequence 1 again (the
    // store refuses it), the other a new event 2. The first fails alone.
    let duplicate = Commit::Process {
        process_id: "p".to_owned(),
        base_version: 0,
        changes: vec![ProcessChange::Appended {
            event: Arc::clone(&stored.events[0]),
            replay: None,
            record: Arc::clone(&stored.record),
        }],
    };
    let mut second = (*stored.events[0]).clone();
    second.sequence = 2;
    let next = Commit::Process {
        process_id: "p".to_owned(),
        base_version: 0,
        changes: vec![ProcessChange::Appended {
            event: Arc::new(second),
            replay: None,
            record: Arc::clone(&stored.record),
        }],
    };
    let (refused, appended) = tokio::join!(store::commit(&store, duplicate), store::commit(&store, next));
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "the duplicate sequence: {refused:?}");
    assert_eq!(appended, Ok(Committed::Done), "the other commit of the batch");
    assert!(!store.is_poisoned(), "a refused commit does not poison the store");
    let reloaded = store.load_process("p").await.expect("load").expect("p");
    assert_eq!(reloaded.events.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![1, 2]);
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
