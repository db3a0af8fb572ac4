//! The actor registry on the PostgreSQL store passes the conformance
//! suite, each scenario on a fresh database of the test server (see
//! `process_registry::testing::postgres`).

use std::sync::Arc;

use process_registry::testing::{conformance, postgres};
use process_registry::{ActorProcessRegistry, ProcessRegistry, RegistryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_registry_conforms() {
    let Some(server) = postgres::server() else {
        return;
    };
    conformance::run(|| {
        let server = server.clone();
        async move {
            let url = postgres::fresh_database(&server).await;
            Arc::new(ActorProcessRegistry::connect(&url, RegistryConfig::default()).await.expect("connect"))
                as Arc<dyn ProcessRegistry>
        }
    })
    .await;
}
