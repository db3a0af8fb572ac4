//! The actor registry on the durable SQLite store passes the conformance
//! suite, each scenario on a fresh file in its own temporary directory.

use std::sync::{Arc, Mutex};

use process_registry::testing::conformance;
use process_registry::{ActorProcessRegistry, ProcessRegistry, RegistryConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_registry_conforms() {
    let directories = Arc::new(Mutex::new(Vec::new()));
    conformance::run(|| {
        let directories = Arc::clone(&directories);
        async move {
            let directory = tempfile::tempdir().expect("a temporary directory");
            let path = directory.path().join("registry.db");
            directories.lock().expect("directories").push(directory);
            Arc::new(ActorProcessRegistry::open(path, RegistryConfig::default()).await.expect("open"))
                as Arc<dyn ProcessRegistry>
        }
    })
    .await;
}
