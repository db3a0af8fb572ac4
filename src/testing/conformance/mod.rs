//! The reusable conformance suite: every [`ProcessRegistry`] must pass it.
//!
//! Each [`Scenario`] pins one rule of the specification (section 4, "Behaviour,
//! method by method") and is named after the behaviour it checks. [`run`]
//! gives every scenario a *fresh* registry from the caller's factory, runs it
//! as its own tokio task under a generous timeout (so a lost wakeup shows up as
//! a named failure instead of a hang, and a panicking scenario does not hide
//! the others), and panics at the end listing every failed scenario with its
//! message.
//!
//! ```ignore
//! use std::sync::Arc;
//! use process_registry::ProcessRegistry;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_registry_conforms() {
//!     process_registry::testing::conformance::run(|| async {
//!         Arc::new(MyRegistry::new()) as Arc<dyn ProcessRegistry>
//!     })
//!     .await;
//! }
//! ```
//!
//! Scenarios only use the trait, so they only see the registry's own clock.
//! Timestamps are therefore checked with `>=`, and lease expiry is exercised
//! with a ttl of 0 (already expired) and large ttls (60 s and more). No
//! scenario sleeps to assert timing: "still parked" is checked with a short
//! timeout that must elapse and with
//! [`JoinHandle::is_finished`](tokio::task::JoinHandle::is_finished).
//!
//! # Layout
//!
//! This module is the runner. The scenarios live in one file per group of
//! rules, each listing its own scenarios next to their definitions and saying
//! in its docs which rule it pins; [`scenarios`] joins the lists in the order
//! of the specification's section 4: `registration`, `append`, `selectors`,
//! `await_output`, `wakes` and `terminal` (the steps of `append_event`),
//! `reads`, `waits`, `completion`, `wait_state`, `listing`, `grants`,
//! `leases`, then the rules that cut across methods, `errors` and
//! `concurrency`. `support` holds the assertion macros (`ensure!`,
//! `ensure_eq!`, `ensure_err!`), the helpers and the fixtures they share.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::ProcessRegistry;

mod support;

mod append;
mod await_output;
mod completion;
mod concurrency;
mod errors;
mod grants;
mod leases;
mod listing;
mod reads;
mod registration;
mod selectors;
mod terminal;
mod wait_state;
mod waits;
mod wakes;

/// A boxed future yielding a registry.
pub type RegistryFuture = Pin<Box<dyn Future<Output = Arc<dyn ProcessRegistry>> + Send>>;

/// A shareable factory of fresh registries (see [`run_factory`]).
pub type RegistryFactory = Arc<dyn Fn() -> RegistryFuture + Send + Sync>;

/// What a scenario returns: `Err` carries a message saying what went wrong.
pub type ScenarioResult = Result<(), String>;

/// The boxed future of one scenario run.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = ScenarioResult> + Send>>;

/// The body of a scenario: takes a fresh registry.
pub type ScenarioFn = fn(Arc<dyn ProcessRegistry>) -> ScenarioFuture;

/// How long one scenario may take before it is reported as hung.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(30);

/// One named conformance check.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// The behaviour the scenario pins.
    pub name: &'static str,
    /// The scenario body.
    pub run: ScenarioFn,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).finish()
    }
}

/// A failed scenario: its name and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioFailure {
    /// The scenario's name.
    pub name: &'static str,
    /// Its failure message (an assertion, a panic, or a timeout).
    pub message: String,
}

impl fmt::Display for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// Runs every scenario, each on a fresh registry from `make`, and panics
/// listing every failed scenario with its message.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
{
    run_matching(make, |_| true).await;
}

/// Like [`run`], with a [`RegistryFactory`].
pub async fn run_factory(factory: RegistryFactory) {
    run(move || factory()).await;
}

/// Runs the scenarios whose name passes `select` (for example one scenario
/// while debugging), and panics listing every failure.
pub async fn run_matching<F, Fut, P>(make: F, select: P)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
    P: Fn(&str) -> bool,
{
    let chosen: Vec<Scenario> = scenarios().into_iter().filter(|scenario| select(scenario.name)).collect();
    assert!(!chosen.is_empty(), "no conformance scenario matched the selection");
    let total = chosen.len();
    let failures = check(make, &chosen).await;
    if !failures.is_empty() {
        let listing: Vec<String> = failures.iter().map(|failure| format!("  - {failure}")).collect();
        panic!("{} of {total} conformance scenarios failed:\n{}", failures.len(), listing.join("\n"));
    }
}

/// Runs `chosen`, each on a fresh registry from `make`, one after another,
/// and returns the failures without panicking.
pub async fn check<F, Fut>(make: F, chosen: &[Scenario]) -> Vec<ScenarioFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
{
    let mut failures = Vec::new();
    for scenario in chosen {
        let registry = make().await;
        if let Err(message) = run_scenario(*scenario, registry).await {
            failures.push(ScenarioFailure { name: scenario.name, message });
        }
    }
    failures
}

/// Runs one scenario on `registry` as its own task, under [`SCENARIO_TIMEOUT`];
/// a panic or a timeout becomes an `Err`.
pub async fn run_scenario(scenario: Scenario, registry: Arc<dyn ProcessRegistry>) -> ScenarioResult {
    let task = tokio::spawn(tokio::time::timeout(SCENARIO_TIMEOUT, (scenario.run)(registry)));
    match task.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => Err(format!("did not finish within {SCENARIO_TIMEOUT:?} (a lost wakeup or a deadlock?)")),
        Err(join_error) => match join_error.try_into_panic() {
            Ok(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            Err(join_error) => Err(format!("task failed: {join_error}")),
        },
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

/// Every scenario, in the order [`run`] runs them: file by file, in the
/// order of the specification's section 4, each file's in its own order.
pub fn scenarios() -> Vec<Scenario> {
    [
        registration::scenarios(),
        append::scenarios(),
        selectors::scenarios(),
        await_output::scenarios(),
        wakes::scenarios(),
        terminal::scenarios(),
        reads::scenarios(),
        waits::scenarios(),
        completion::scenarios(),
        wait_state::scenarios(),
        listing::scenarios(),
        grants::scenarios(),
        leases::scenarios(),
        errors::scenarios(),
        concurrency::scenarios(),
    ]
    .concat()
}
