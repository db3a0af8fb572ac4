//! No lost wakeup, proven by racing: a waiter that parks while its writer
//! commits is always answered, with exactly what the writer committed.
//!
//! Every pair is a waiter and a writer that start at the same moment: two
//! tasks spawned together (in alternating order) that both pass a two-party
//! `tokio::sync::Barrier` before they call the registry, on a multi-thread
//! runtime, with a few random yields on one side. Pairs run in batches of
//! [`IN_FLIGHT`], spread over many processes and event types, and every
//! waiter is bounded by [`WAIT_TIMEOUT`]. A lost wakeup shows up as a
//! timeout; the tests assert there are none, and that each waiter got
//! exactly what its writer committed.
//!
//! - `wait_event_after` against `append_event`: each process declares
//!   [`TYPES_PER_PROCESS`] event types and hosts one pair per type per
//!   batch, so waits and appends of other pairs interleave in its mailbox.
//!   The waiter waits after the last sequence before the batch, so the first
//!   event of its type after that is exactly its writer's.
//! - `await_process` against `complete_process`: one fresh process per pair.
//!
//! `PROCESS_REGISTRY_RACE_PAIRS` sets the number of pairs of *each* kind
//! (default 10,000, so 20,000 per registry; the nightly run is
//! `PROCESS_REGISTRY_RACE_PAIRS=1000000 cargo test --release --test lost_wakeup`).
//! A registry instance is replaced every [`SEGMENT`] pairs so a million-pair
//! run keeps memory bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessRegistration, ProcessRegistry, RegistryConfig,
};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

/// How long a waiter may take before its wakeup counts as lost.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pairs in flight at once.
const IN_FLIGHT: usize = 1_000;
/// Event types per process in the wait/append race (one pair per type per batch).
const TYPES_PER_PROCESS: usize = 4;
/// Pairs per registry instance before it is replaced by a fresh one.
const SEGMENT: usize = 50_000;
/// Default pairs of each kind.
const DEFAULT_PAIRS: usize = 10_000;

fn pairs() -> usize {
    match std::env::var("PROCESS_REGISTRY_RACE_PAIRS") {
        Ok(text) => text.trim().replace('_', "").parse().expect("PROCESS_REGISTRY_RACE_PAIRS must be a count"),
        Err(_) => DEFAULT_PAIRS,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Actor,
    GlobalLock,
}

/// One registry instance under test.
struct Instance {
    registry: Arc<dyn ProcessRegistry>,
    actor: Option<ActorProcessRegistry>,
}

impl Instance {
    async fn start(kind: Kind) -> Self {
        match kind {
            Kind::Actor => {
                let actor = ActorProcessRegistry::start(RegistryConfig::default()).await.expect("registry starts");
                Self { registry: Arc::new(actor.clone()), actor: Some(actor) }
            }
            Kind::GlobalLock => Self { registry: Arc::new(GlobalLockRegistry::new()), actor: None },
        }
    }

    async fn stop(self) {
        if let Some(actor) = self.actor {
            assert_eq!(actor.stats().parked_waiters, 0, "a finished race leaves no waiter parked");
            actor.shutdown().await;
        }
    }
}

/// A tiny deterministic generator for jitter (no dependency needed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// What went wrong across all pairs of one race.
#[derive(Debug, Default)]
struct Tally {
    pairs: usize,
    timeouts: usize,
    wrong_answers: usize,
    errors: usize,
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, what: String) {
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }

    fn assert_clean(&self, race: &str, expected_pairs: usize) {
        assert_eq!(self.pairs, expected_pairs, "{race}: every pair ran");
        assert_eq!(
            (self.timeouts, self.wrong_answers, self.errors),
            (0, 0, 0),
            "{race}: {} of {} waiters timed out after {WAIT_TIMEOUT:?} (lost wakeups), {} got a wrong answer, \
             {} got an error; first few: {:#?}",
            self.timeouts,
            self.pairs,
            self.wrong_answers,
            self.errors,
            self.examples
        );
    }
}

/// Jitter for one pair: (spawn the waiter first?, yields before the waiter, yields before the writer).
fn jitter(rng: &mut XorShift) -> (bool, u64, u64) {
    let bits = rng.next();
    let yields = (bits >> 1) % 4;
    if bits & 4 == 0 {
        (bits & 1 == 0, yields, 0)
    } else {
        (bits & 1 == 0, 0, yields)
    }
}

async fn yields(count: u64) {
    for _ in 0..count {
        tokio::task::yield_now().await;
    }
}

/// Spawns `waiter` and `writer` in the given order; both pass one barrier first.
fn spawn_pair<W, A>(waiter_first: bool, waiter: W, writer: A) -> (JoinHandle<W::Output>, JoinHandle<A::Output>)
where
    W: std::future::Future + Send + 'static,
    W::Output: Send + 'static,
    A: std::future::Future + Send + 'static,
    A::Output: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(2));
    let at_start = Arc::clone(&barrier);
    let waiter = async move {
        at_start.wait().await;
        waiter.await
    };
    let writer = async move {
        barrier.wait().await;
        writer.await
    };
    if waiter_first {
        let waiter = tokio::spawn(waiter);
        (waiter, tokio::spawn(writer))
    } else {
        let writer = tokio::spawn(writer);
        (tokio::spawn(waiter), writer)
    }
}

fn race_registration(id: &str) -> ProcessRegistration {
    let types =
        (0..TYPES_PER_PROCESS).map(|index| ProcessEventType::new(format!("t{index}"), json!({"type": "object"})));
    ProcessRegistration::new(id, ProcessInput::definition("race", serde_json::Map::new())).with_extra_event_types(types)
}

/// `pairs` waits raced against the appends that satisfy them.
async fn race_wait_against_append(kind: Kind, pairs: usize) -> Tally {
    let mut tally = Tally::default();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let processes = IN_FLIGHT / TYPES_PER_PROCESS;
    let mut done = 0;
    let mut segment = 0;
    while done < pairs {
        let instance = Instance::start(kind).await;
        let ids: Vec<String> = (0..processes).map(|index| format!("w{segment}-{index}")).collect();
        for id in &ids {
            instance.registry.register_process(race_registration(id)).await.expect("register");
        }
        let mut last_sequence = vec![0u64; processes];
        let segment_end = pairs.min(done + SEGMENT);
        while done < segment_end {
            let batch = IN_FLIGHT.min(segment_end - done);
            let mut running = Vec::with_capacity(batch);
            for slot in 0..batch {
                let process = slot / TYPES_PER_PROCESS;
                let id = ids[process].clone();
                let event_type = format!("t{}", slot % TYPES_PER_PROCESS);
                let after = last_sequence[process];
                let (waiter_first, waiter_yields, writer_yields) = jitter(&mut rng);
                let pair = done + slot;
                let waiter = {
                    let (registry, id, event_type) = (Arc::clone(&instance.registry), id.clone(), event_type.clone());
                    async move {
                        yields(waiter_yields).await;
                        tokio::time::timeout(WAIT_TIMEOUT, registry.wait_event_after(&id, &event_type, after)).await
                    }
                };
                let writer = {
                    let (registry, id, event_type) = (Arc::clone(&instance.registry), id.clone(), event_type.clone());
                    async move {
                        yields(writer_yields).await;
                        registry
                            .append_event(&id, ProcessEventAppendRequest::new(event_type, json!({"pair": pair})))
                            .await
                    }
                };
                running.push((id, event_type, spawn_pair(waiter_first, waiter, writer)));
            }
            for (slot, (id, event_type, (waiter, writer))) in running.into_iter().enumerate() {
                last_sequence[slot / TYPES_PER_PROCESS] += 1;
                tally.pairs += 1;
                let appended = writer.await.expect("writer task");
                let waited = waiter.await.expect("waiter task");
                match (appended, waited) {
                    (Err(err), _) => {
                        tally.errors += 1;
                        tally.note(format!("append to {id}/{event_type}: {err}"));
                    }
                    (_, Err(_)) => {
                        tally.timeouts += 1;
                        tally.note(format!("wait on {id}/{event_type} timed out"));
                    }
                    (_, Ok(Err(err))) => {
                        tally.errors += 1;
                        tally.note(format!("wait on {id}/{event_type}: {err}"));
                    }
                    (Ok(appended), Ok(Ok(event))) => {
                        if event != appended.event {
                            tally.wrong_answers += 1;
                            tally.note(format!(
                                "wait on {id}/{event_type} got sequence {} (`{}`), its writer appended {}",
                                event.sequence, event.event_type, appended.event.sequence
                            ));
                        }
                    }
                }
            }
            done += batch;
        }
        instance.stop().await;
        segment += 1;
    }
    tally
}

/// `pairs` awaits raced against the completions that satisfy them.
async fn race_await_against_complete(kind: Kind, pairs: usize) -> Tally {
    let mut tally = Tally::default();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut done = 0;
    while done < pairs {
        let instance = Instance::start(kind).await;
        let segment_end = pairs.min(done + SEGMENT);
        while done < segment_end {
            let batch = IN_FLIGHT.min(segment_end - done);
            let ids: Vec<String> = (done..done + batch).map(|pair| format!("c{pair}")).collect();
            let registrations: Vec<_> = ids
                .iter()
                .map(|id| {
                    let (registry, id) = (Arc::clone(&instance.registry), id.clone());
                    tokio::spawn(async move {
                        let registration = ProcessRegistration::new(id, ProcessInput::external(json!({})));
                        registry.register_process(registration).await
                    })
                })
                .collect();
            for registered in registrations {
                registered.await.expect("register task").expect("register");
            }
            let mut running = Vec::with_capacity(batch);
            for (slot, id) in ids.into_iter().enumerate() {
                let pair = done + slot;
                let output = if pair % 3 == 0 {
                    ProcessAwaitOutput::failure("e", format!("pair {pair}"))
                } else {
                    ProcessAwaitOutput::success(json!({"pair": pair}))
                };
                let (waiter_first, waiter_yields, writer_yields) = jitter(&mut rng);
                let waiter = {
                    let (registry, id) = (Arc::clone(&instance.registry), id.clone());
                    async move {
                        yields(waiter_yields).await;
                        tokio::time::timeout(WAIT_TIMEOUT, registry.await_process(&id)).await
                    }
                };
                let writer = {
                    let (registry, id, output) = (Arc::clone(&instance.registry), id.clone(), output.clone());
                    async move {
                        yields(writer_yields).await;
                        registry.complete_process(&id, output).await
                    }
                };
                running.push((id, output, spawn_pair(waiter_first, waiter, writer)));
            }
            for (id, output, (waiter, writer)) in running {
                tally.pairs += 1;
                let completed = writer.await.expect("writer task");
                let awaited = waiter.await.expect("waiter task");
                match (completed, awaited) {
                    (Err(err), _) => {
                        tally.errors += 1;
                        tally.note(format!("complete {id}: {err}"));
                    }
                    (_, Err(_)) => {
                        tally.timeouts += 1;
                        tally.note(format!("await {id} timed out"));
                    }
                    (_, Ok(Err(err))) => {
                        tally.errors += 1;
                        tally.note(format!("await {id}: {err}"));
                    }
                    (Ok(record), Ok(Ok(awaited))) => {
                        if awaited != output || record.status.await_output() != Some(&output) {
                            tally.wrong_answers += 1;
                            tally.note(format!("await {id} got {awaited:?}, completed with {output:?}"));
                        }
                    }
                }
            }
            done += batch;
        }
        instance.stop().await;
    }
    tally
}

async fn race_both(kind: Kind) {
    let pairs = pairs();
    let started = Instant::now();
    let waits = race_wait_against_append(kind, pairs).await;
    let waits_took = started.elapsed();
    let started = Instant::now();
    let awaits = race_await_against_complete(kind, pairs).await;
    let awaits_took = started.elapsed();
    eprintln!(
        "{kind:?}: {pairs} wait/append pairs in {waits_took:?} ({} timeouts); \
         {pairs} await/complete pairs in {awaits_took:?} ({} timeouts)",
        waits.timeouts, awaits.timeouts
    );
    waits.assert_clean(&format!("{kind:?} wait_event_after vs append_event"), pairs);
    awaits.assert_clean(&format!("{kind:?} await_process vs complete_process"), pairs);
}

#[tokio::test(flavor = "multi_thread")]
async fn actor_registry_loses_no_wakeup() {
    race_both(Kind::Actor).await;
}

/// The same race against the global-lock baseline, for comparison.
#[tokio::test(flavor = "multi_thread")]
async fn global_lock_registry_loses_no_wakeup() {
    race_both(Kind::GlobalLock).await;
}
