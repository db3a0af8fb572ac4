//! Listings stay exact while the registry changes under them: every
//! listing is sorted by id, holds each process once, holds every process
//! whose state it matches for the whole call, and nothing the call could
//! not have seen. Registrations and completions race the listings on two
//! worker threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessInput, ProcessListFilter, ProcessRecord, ProcessRegistration,
    ProcessRegistry, ProcessStatusFilter, RegistryConfig,
};
use serde_json::json;

const IDS: usize = 600;
/// Registered before the race starts; the rest register during it.
const PREREGISTERED: usize = 200;

fn id(i: usize) -> String {
    format!("p-{i:04}")
}

/// A scrambled order of `0..IDS`, so no index sees ids in ascending order.
fn scrambled(offset: usize) -> impl Iterator<Item = usize> {
    (0..IDS).map(move |k| (k * 367 + offset) % IDS)
}

/// What each id has been through, as the racing tasks report it.
#[derive(Default)]
struct Progress {
    registered: Vec<AtomicBool>,
    completing: Vec<AtomicBool>,
    completed: Vec<AtomicBool>,
}

impl Progress {
    fn new() -> Self {
        let flags = || (0..IDS).map(|_| AtomicBool::new(false)).collect();
        Self { registered: flags(), completing: flags(), completed: flags() }
    }

    fn read(flags: &[AtomicBool]) -> Vec<bool> {
        flags.iter().map(|flag| flag.load(Ordering::SeqCst)).collect()
    }
}

/// What a listing may and must hold, from the flags read just before the
/// call (`before`) and just after it (`after`).
struct Window {
    registered_before: Vec<bool>,
    completed_before: Vec<bool>,
    completing_after: Vec<bool>,
}

fn ids_of(records: &[ProcessRecord]) -> Vec<usize> {
    records
        .iter()
        .map(|record| record.id.strip_prefix("p-").and_then(|n| n.parse().ok()).expect("a known id"))
        .collect()
}

fn assert_sorted_once(ids: &[usize], what: &str) {
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{what} is not strictly ascending: {ids:?}");
}

/// A check of the listings, run over and over while the writers race.
type Check = fn(ActorProcessRegistry, Arc<Progress>) -> futures_like::BoxFuture;

/// Registers the rest of the ids and completes the even ones while two
/// listers run `check` over and over; returns how many checks ran.
async fn race(check: Check) -> usize {
    let config = RegistryConfig::default().with_passivation(None);
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    let progress = Arc::new(Progress::new());
    for i in scrambled(0).filter(|&i| i < PREREGISTERED) {
        registry.register_process(registration(i)).await.unwrap();
        progress.registered[i].store(true, Ordering::SeqCst);
    }
    let racing = Arc::new(AtomicBool::new(true));
    let mut writers = Vec::new();
    for part in 0..2 {
        let (registrar, registered) = (registry.clone(), progress.clone());
        writers.push(tokio::spawn(async move {
            for i in scrambled(part * 13).filter(|&i| i >= PREREGISTERED && i % 2 == part) {
                registrar.register_process(registration(i)).await.unwrap();
                registered.registered[i].store(true, Ordering::SeqCst);
            }
        }));
        let (completer, completions) = (registry.clone(), progress.clone());
        writers.push(tokio::spawn(async move {
            for i in scrambled(part * 29).filter(|&i| i % 4 == part * 2) {
                while !completions.registered[i].load(Ordering::SeqCst) {
                    tokio::task::yield_now().await;
                }
                completions.completing[i].store(true, Ordering::SeqCst);
                completer.complete_process(&id(i), ProcessAwaitOutput::success(json!(i))).await.unwrap();
                completions.completed[i].store(true, Ordering::SeqCst);
            }
        }));
    }
    let listers: Vec<_> = (0..2)
        .map(|_| {
            let (registry, progress, racing) = (registry.clone(), progress.clone(), racing.clone());
            tokio::spawn(async move {
                let mut checks = 0;
                while racing.load(Ordering::SeqCst) {
                    check(registry.clone(), progress.clone()).await;
                    checks += 1;
                    // A listing awaits nothing: without this the listers
                    // would keep both workers from the writers.
                    tokio::task::yield_now().await;
                }
                checks
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    racing.store(false, Ordering::SeqCst);
    let mut checks = 0;
    for lister in listers {
        checks += lister.await.unwrap();
    }
    // At rest, the listings are exact.
    check(registry.clone(), progress.clone()).await;
    let worklist = ids_of(&registry.list_non_terminal().await.unwrap());
    assert_eq!(worklist, (0..IDS).filter(|i| i % 2 == 1).collect::<Vec<_>>(), "the odd ids run, the even completed");
    registry.shutdown().await;
    checks
}

fn registration(i: usize) -> ProcessRegistration {
    let definition = if i.is_multiple_of(3) { "thirds" } else { "others" };
    ProcessRegistration::new(id(i), ProcessInput::definition(definition, serde_json::Map::new()))
}

/// Runs `list` between two readings of the progress flags.
async fn observe<F: std::future::Future<Output = Vec<ProcessRecord>>>(
    progress: &Progress,
    list: F,
) -> (Vec<usize>, Window) {
    let registered_before = Progress::read(&progress.registered);
    let completed_before = Progress::read(&progress.completed);
    let listed = ids_of(&list.await);
    let window = Window { registered_before, completed_before, completing_after: Progress::read(&progress.completing) };
    (listed, window)
}

fn check_worklist(registry: ActorProcessRegistry, progress: Arc<Progress>) -> futures_like::BoxFuture {
    Box::pin(async move {
        let (listed, window) = observe(&progress, async { registry.list_non_terminal().await.unwrap() }).await;
        assert_sorted_once(&listed, "list_non_terminal");
        for i in 0..IDS {
            let holds = listed.binary_search(&i).is_ok();
            let must = window.registered_before[i] && !window.completing_after[i];
            assert!(!must || holds, "list_non_terminal misses running {}", id(i));
            assert!(!window.completed_before[i] || !holds, "list_non_terminal lists completed {}", id(i));
        }
    })
}

fn check_by_status(registry: ActorProcessRegistry, progress: Arc<Progress>) -> futures_like::BoxFuture {
    Box::pin(async move {
        let any = ProcessListFilter::any();
        let (listed, window) = observe(&progress, async { registry.list_processes(&any).await.unwrap() }).await;
        assert_sorted_once(&listed, "list_processes(any)");
        for i in 0..IDS {
            // Completing moves a process between status indexes; it must
            // never fall between them.
            let holds = listed.binary_search(&i).is_ok();
            assert!(!window.registered_before[i] || holds, "list_processes(any) misses {}", id(i));
        }

        let completed = ProcessListFilter { status: ProcessStatusFilter::Completed, ..ProcessListFilter::default() };
        let (listed, window) = observe(&progress, async { registry.list_processes(&completed).await.unwrap() }).await;
        assert_sorted_once(&listed, "list_processes(completed)");
        for i in 0..IDS {
            let holds = listed.binary_search(&i).is_ok();
            assert!(!window.completed_before[i] || holds, "list_processes(completed) misses {}", id(i));
            assert!(window.completing_after[i] || !holds, "list_processes(completed) lists running {}", id(i));
        }

        let thirds = ProcessListFilter { definition: Some("thirds".into()), ..ProcessListFilter::default() };
        let (listed, window) = observe(&progress, async { registry.list_processes(&thirds).await.unwrap() }).await;
        assert_sorted_once(&listed, "list_processes(running, thirds)");
        for i in 0..IDS {
            let holds = listed.binary_search(&i).is_ok();
            let must = i % 3 == 0 && window.registered_before[i] && !window.completing_after[i];
            assert!(!must || holds, "list_processes(running, thirds) misses {}", id(i));
            assert!(i % 3 == 0 || !holds, "list_processes(running, thirds) lists {}", id(i));
            assert!(!window.completed_before[i] || !holds, "list_processes(running, thirds) lists completed {}", id(i));
        }
    })
}

mod futures_like {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_non_terminal_stays_sorted_and_complete_under_concurrent_registrations_and_completions() {
    let checks = race(check_worklist).await;
    assert!(checks > 10, "the listings raced the writers ({checks} ran)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_listings_never_lose_a_process_that_moves_between_statuses() {
    let checks = race(check_by_status).await;
    assert!(checks > 10, "the listings raced the writers ({checks} ran)");
}
