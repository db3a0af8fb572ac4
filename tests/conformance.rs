//! The actor registry passes the conformance suite.

use std::sync::Arc;

use process_registry::testing::conformance;
use process_registry::ProcessRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actor_registry_conforms() {
    conformance::run(|| async {
        Arc::new(
            process_registry::ActorProcessRegistry::start(process_registry::RegistryConfig::default())
                .await
                .expect("start"),
        ) as Arc<dyn ProcessRegistry>
    })
    .await;
}
