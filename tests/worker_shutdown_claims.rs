//! `ProcessWorker::shutdown` leaves no lease held, even one whose claim
//! was in flight when it was called.
//!
//! Regression: the sweep task was raced against the shutdown token as a
//! whole, so a shutdown that came while a claim was in flight dropped the
//! claim after the registry had granted it: no run task ever released that
//! lease, and the process stayed leased to a stopped worker until the ttl
//! ran out. On a durable store (a claim is a commit) with a big worklist,
//! a sweep is almost always mid-claim, so each round below shuts a worker
//! down at a different point of its sweep; a probe claim by another owner
//! then finds every process free. Timing only picks the shutdown moment;
//! nothing here asserts a duration.

use std::sync::Arc;
use std::time::Duration;

use process_registry::worker::{ProcessContext, ProcessWorker, WorkerConfig};
use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessAwaitOutput, ProcessInput, ProcessLeaseCompletion,
    ProcessRegistration, ProcessRegistry, RegistryConfig, RegistryError,
};

const PROCESSES: usize = 200;
const ROUNDS: u64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_back_a_claim_in_flight() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let registry =
        ActorProcessRegistry::open(dir.path().join("registry.sqlite"), RegistryConfig::default()).await.expect("open");
    let ids: Vec<String> = (0..PROCESSES).map(|index| format!("p{index}")).collect();
    for id in &ids {
        let registration = ProcessRegistration::new(id.clone(), ProcessInput::definition("job", Default::default()));
        registry.register_process(registration).await.expect("registered");
    }
    for round in 0..ROUNDS {
        let fenced: Arc<dyn FencedProcessRegistry> = Arc::new(registry.clone());
        // Room for every process: the sweep claims one after another, never waiting for a slot.
        let config = WorkerConfig {
            concurrency: PROCESSES,
            lease_ttl: Duration::from_secs(600),
            ..WorkerConfig::new(format!("worker-{round}"))
        };
        // Handlers that only stop when cancelled, without an outcome: the
        // shutdown abandons them, and their leases are released.
        let worker = ProcessWorker::builder(fenced, config)
            .handler("job", |context: ProcessContext| async move {
                context.cancelled().await;
                Err::<ProcessAwaitOutput, _>("cancelled")
            })
            .start()
            .expect("the worker starts");
        tokio::time::sleep(Duration::from_millis(10 + round * 15)).await;
        let stats = worker.shutdown(Duration::ZERO).await;
        let mut held = Vec::new();
        for id in &ids {
            match registry.claim_process_lease(id, "probe", 60_000).await {
                Ok(lease) => registry
                    .complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease))
                    .await
                    .expect("the probe releases"),
                Err(RegistryError::LeaseHeld { owner_id, .. }) => held.push(format!("{id} (by {owner_id})")),
                Err(error) => panic!("probe claim of {id}: {error}"),
            }
        }
        assert!(held.is_empty(), "round {round}: after shutdown ({stats:?}), still leased: {held:?}");
    }
    registry.shutdown().await;
}
