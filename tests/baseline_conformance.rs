//! The global-lock baseline registry passes the conformance suite.

use std::sync::Arc;

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::testing::conformance;
use process_registry::ProcessRegistry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_registry_conforms() {
    conformance::run(|| async { Arc::new(GlobalLockRegistry::new()) as Arc<dyn ProcessRegistry> }).await;
}

#[test]
fn scenario_names_are_unique_and_plentiful() {
    let scenarios = conformance::scenarios();
    let mut names: Vec<&str> = scenarios.iter().map(|scenario| scenario.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), scenarios.len(), "scenario names must be unique");
    assert!(scenarios.len() >= 40, "only {} scenarios", scenarios.len());
}
