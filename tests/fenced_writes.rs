//! The fenced-write contract of [`FencedProcessRegistry`], on every registry.
//!
//! Pins: a fenced append, completion or wait commits only while the
//! presented lease is the process's current, unexpired lease (same owner,
//! lease token and fencing token, expiry read from the registry's clock,
//! never from the presented lease). Otherwise the write is refused with
//! `LeaseFenced`, naming the presented token and the current live lease's
//! (`None` when none is live: expired or released; `Some(2)` after a
//! takeover), and the log and the record are exactly as before. The fence
//! is checked before the replay index, so a stale writer learns it lost the
//! process even when its write would only have replayed. A fenced write on
//! an unknown process is `UnknownProcess`. Under real concurrency, a stale
//! writer racing the claim that fences it never gets an event into the log
//! after that claim. The actor registry announces each new registration on
//! `registration_notices`; the baseline has none.
//!
//! Every scenario is written once over `Arc<dyn FencedProcessRegistry>` and
//! a `ManualClock` (time moves only when a scenario advances it: nothing
//! sleeps for a lease to expire), then run on the in-memory
//! `ActorProcessRegistry`, on the `GlobalLockRegistry` baseline, and on
//! `ActorProcessRegistry::open` over a fresh SQLite file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, Clock, FencedProcessRegistry, ManualClock, ProcessAwaitOutput, ProcessEvent,
    ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessLease, ProcessLeaseCompletion, ProcessRecord,
    ProcessRegistration, ProcessStatus, RegistryConfig, RegistryError, WaitKind, WaitState,
};
use serde_json::json;
use tempfile::TempDir;

/// Where every manual clock starts.
const START_MS: u64 = 1_700_000_000_000;
/// The ttl of every lease the scenarios claim, in manual-clock ms.
const TTL_MS: u64 = 1_000;
/// The bound on every wait for a condition (never a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Actor,
    Baseline,
    Sqlite,
}

/// One registry under test, with the clock it reads.
struct Subject {
    kind: Kind,
    registry: Arc<dyn FencedProcessRegistry>,
    clock: Arc<ManualClock>,
    actor: Option<ActorProcessRegistry>,
    _dir: Option<TempDir>,
}

impl Subject {
    async fn start(kind: Kind) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let config = RegistryConfig::default().with_clock(clock.clone());
        match kind {
            Kind::Actor => {
                let actor = ActorProcessRegistry::start(config).await.expect("the in-memory registry starts");
                Self { kind, registry: Arc::new(actor.clone()), clock, actor: Some(actor), _dir: None }
            }
            Kind::Baseline => {
                let baseline = GlobalLockRegistry::with_clock(clock.clone());
                Self { kind, registry: Arc::new(baseline), clock, actor: None, _dir: None }
            }
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let actor = ActorProcessRegistry::open(dir.path().join("registry.sqlite"), config)
                    .await
                    .expect("the SQLite registry opens");
                Self { kind, registry: Arc::new(actor.clone()), clock, actor: Some(actor), _dir: Some(dir) }
            }
        }
    }

    async fn stop(self) {
        if let Some(actor) = self.actor {
            actor.shutdown().await;
        }
    }
}

/// Each named scenario becomes a module of tests, one per registry kind
/// listed after it.
macro_rules! scenarios {
    ($($scenario:ident => [$($kind:ident),+];)+) => {$(
        mod $scenario {
            $(
                #[allow(non_snake_case)]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $kind() {
                    let subject = super::Subject::start(super::Kind::$kind).await;
                    super::$scenario(&subject).await;
                    subject.stop().await;
                }
            )+
        }
    )+};
}

scenarios! {
    the_current_lease_commits_every_fenced_write => [Actor, Baseline, Sqlite];
    an_expired_lease_is_refused_and_changes_nothing => [Actor, Baseline, Sqlite];
    a_takeover_fences_the_old_lease_and_admits_the_new => [Actor, Baseline, Sqlite];
    a_same_owner_reclaim_fences_its_earlier_lease => [Actor, Baseline, Sqlite];
    a_released_lease_is_refused => [Actor, Baseline, Sqlite];
    a_forged_lease_is_refused => [Actor, Baseline, Sqlite];
    a_replay_under_a_stale_lease_is_refused => [Actor, Baseline, Sqlite];
    fenced_writes_on_an_unknown_process_are_unknown_process => [Actor, Baseline, Sqlite];
    a_stale_writer_racing_a_takeover_never_lands_after_it => [Actor, Baseline, Sqlite];
    a_stale_writer_racing_a_same_owner_reclaim_never_lands_after_it => [Actor, Baseline, Sqlite];
    registration_notices_count_new_registrations => [Actor, Baseline, Sqlite];
}

// ---------------------------------------------------------------- helpers

/// A process of definition `job` that declares a `step` event type.
fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types([ProcessEventType::new("step", json!({"type": "object"}))])
}

fn step(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("step", json!({ "n": n }))
}

fn wait_state(subject: &Subject) -> WaitState {
    WaitState {
        kind: WaitKind::Signal {
            name: "go".to_owned(),
            event_type: "step".to_owned(),
            key: "go-1".to_owned(),
            ordinal: 1,
        },
        since_ms: subject.clock.now_ms(),
    }
}

async fn register_and_claim(subject: &Subject, id: &str, owner: &str) -> ProcessLease {
    subject.registry.register_process(registration(id)).await.expect("register");
    let lease = subject.registry.claim_process_lease(id, owner, TTL_MS).await.expect("claim");
    assert_eq!((lease.owner_id.as_str(), lease.fencing_token), (owner, 1), "the first claim");
    lease
}

/// Everything a refused write must leave unchanged: the whole log and the
/// whole record (status, wait, timestamps).
async fn snapshot(subject: &Subject, id: &str) -> (Vec<ProcessEvent>, ProcessRecord) {
    let log = subject.registry.events_after(id, 0).await.expect("read the log");
    let record = subject.registry.get_process(id).await.expect("the process exists");
    (log, record)
}

/// The (presented, current) fencing tokens of a `LeaseFenced` refusal that
/// names `process_id`; panics on anything else.
fn fenced<T: std::fmt::Debug>(result: Result<T, RegistryError>, process_id: &str, what: &str) -> (u64, Option<u64>) {
    match result {
        Err(RegistryError::LeaseFenced { process_id: named, presented_fencing_token, current_fencing_token }) => {
            assert_eq!(named, process_id, "{what}: the refusal names the process");
            (presented_fencing_token, current_fencing_token)
        }
        other => panic!("{what}: expected LeaseFenced, got {other:?}"),
    }
}

/// Every fenced write under `lease` is refused naming `current`, and none
/// of them changes the log or the record.
async fn refused_everywhere(subject: &Subject, lease: &ProcessLease, current: Option<u64>) {
    let id = lease.process_id.as_str();
    let registry = &subject.registry;
    let before = snapshot(subject, id).await;
    let expected = (lease.fencing_token, current);
    let append = registry.append_event_fenced(lease, step(99)).await;
    assert_eq!(fenced(append, id, "append"), expected, "append");
    let keyed = registry.append_event_fenced(lease, step(99).with_replay_key("stale-step")).await;
    assert_eq!(fenced(keyed, id, "append with a replay key"), expected, "append with a replay key");
    let wait = registry.set_process_wait_fenced(lease, wait_state(subject)).await;
    assert_eq!(fenced(wait, id, "set_wait"), expected, "set_wait");
    let success = registry.complete_process_fenced(lease, ProcessAwaitOutput::success(json!("stale"))).await;
    assert_eq!(fenced(success, id, "complete (success)"), expected, "complete (success)");
    let failure = registry.complete_process_fenced(lease, ProcessAwaitOutput::failure("stale", "stale")).await;
    assert_eq!(fenced(failure, id, "complete (failure)"), expected, "complete (failure)");
    assert_eq!(snapshot(subject, id).await, before, "a refused write changes nothing");
}

/// Polls `condition` until it holds, at most [`PATIENCE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(PATIENCE, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what}: still not true after {PATIENCE:?}");
}

// -------------------------------------------------------------- scenarios

async fn the_current_lease_commits_every_fenced_write(s: &Subject) {
    let lease = register_and_claim(s, "p", "worker-a").await;
    let appended = s.registry.append_event_fenced(&lease, step(1)).await.expect("fenced append");
    assert_eq!((appended.event.sequence, appended.event.event_type.as_str()), (1, "step"));

    let wait = wait_state(s);
    let record = s.registry.set_process_wait_fenced(&lease, wait.clone()).await.expect("fenced set_wait");
    assert_eq!(record.wait, Some(wait.clone()));
    assert_eq!(s.registry.get_process("p").await.expect("exists").wait, Some(wait));

    let output = ProcessAwaitOutput::success(json!({"done": true}));
    let record = s.registry.complete_process_fenced(&lease, output.clone()).await.expect("fenced complete");
    assert_eq!(record.status, ProcessStatus::Completed { await_output: output.clone() });
    assert_eq!(s.registry.await_process("p").await.expect("await"), output);
    let log = s.registry.events_after("p", 0).await.expect("log");
    assert_eq!(log.iter().map(|event| event.sequence).collect::<Vec<_>>(), [1, 2]);
    assert!(log[1].is_terminal(), "the completion appended the terminal event");

    // Idempotent while the lease is live: the same completion replays.
    let again = s.registry.complete_process_fenced(&lease, output.clone()).await.expect("a repeated completion");
    assert_eq!(again.status, ProcessStatus::Completed { await_output: output });
    assert_eq!(s.registry.events_after("p", 0).await.expect("log").len(), 2, "a replay appends nothing");
    // The lease is still held after the completion, and releases cleanly.
    s.registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await.expect("release");
}

async fn an_expired_lease_is_refused_and_changes_nothing(s: &Subject) {
    let lease = register_and_claim(s, "p", "worker-a").await;
    s.registry.append_event_fenced(&lease, step(1)).await.expect("append while live");
    // One millisecond before expiry the lease is live...
    s.clock.advance(TTL_MS - 1);
    s.registry.append_event_fenced(&lease, step(2)).await.expect("append a millisecond before expiry");
    // ...and at its expiry instant it is not: nothing is live.
    s.clock.advance(1);
    refused_everywhere(s, &lease, None).await;
    s.clock.advance(10 * TTL_MS);
    refused_everywhere(s, &lease, None).await;
    let (log, record) = snapshot(s, "p").await;
    assert_eq!(log.len(), 2);
    assert_eq!(record.status, ProcessStatus::Running);
    assert_eq!(record.wait, None);
}

async fn a_takeover_fences_the_old_lease_and_admits_the_new(s: &Subject) {
    let old = register_and_claim(s, "p", "worker-a").await;
    s.registry.append_event_fenced(&old, step(1)).await.expect("the first owner appends");
    let held = s.registry.claim_process_lease("p", "worker-b", TTL_MS).await;
    assert!(matches!(held, Err(RegistryError::LeaseHeld { .. })), "no takeover while live: {held:?}");

    s.clock.advance(TTL_MS);
    let new = s.registry.claim_process_lease("p", "worker-b", TTL_MS).await.expect("takeover after expiry");
    assert_eq!((new.owner_id.as_str(), new.fencing_token), ("worker-b", 2));
    refused_everywhere(s, &old, Some(2)).await;

    let appended = s.registry.append_event_fenced(&new, step(2)).await.expect("the new owner appends");
    assert_eq!(appended.event.sequence, 2);
    s.registry.set_process_wait_fenced(&new, wait_state(s)).await.expect("the new owner sets the wait");
    let output = ProcessAwaitOutput::success(json!("by b"));
    let record = s.registry.complete_process_fenced(&new, output.clone()).await.expect("the new owner completes");
    assert_eq!(record.status, ProcessStatus::Completed { await_output: output });
    // Completed, and still the old lease learns it was fenced (the fence
    // comes before the terminal check).
    refused_everywhere(s, &old, Some(2)).await;
    assert_eq!(s.registry.events_after("p", 0).await.expect("log").len(), 3);
}

async fn a_same_owner_reclaim_fences_its_earlier_lease(s: &Subject) {
    // A worker restarted under its old owner id reclaims at once, while its
    // earlier incarnation's lease is still live: that lease is fenced.
    let first = register_and_claim(s, "p", "worker-a").await;
    let second = s.registry.claim_process_lease("p", "worker-a", TTL_MS).await.expect("reclaim by the same owner");
    assert_eq!((second.fencing_token, second.owner_id.as_str()), (2, "worker-a"));
    assert_ne!(second.lease_token, first.lease_token);
    refused_everywhere(s, &first, Some(2)).await;
    s.registry.append_event_fenced(&second, step(1)).await.expect("the reclaimed lease appends");
}

async fn a_released_lease_is_refused(s: &Subject) {
    let lease = register_and_claim(s, "p", "worker-a").await;
    s.registry.append_event_fenced(&lease, step(1)).await.expect("append while held");
    s.registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await.expect("release");
    // Released, with the clock not moved: nothing is live.
    refused_everywhere(s, &lease, None).await;
    let next = s.registry.claim_process_lease("p", "worker-b", TTL_MS).await.expect("claim after the release");
    assert_eq!(next.fencing_token, 2);
    refused_everywhere(s, &lease, Some(2)).await;
    assert_eq!(s.registry.events_after("p", 0).await.expect("log").len(), 1);
}

async fn a_forged_lease_is_refused(s: &Subject) {
    let lease = register_and_claim(s, "p", "worker-a").await;
    let forge = |change: fn(&mut ProcessLease)| {
        let mut forged = lease.clone();
        change(&mut forged);
        forged
    };
    // The right fencing token under another lease token or owner, and the
    // right tokens with a fencing token from the future.
    refused_everywhere(s, &forge(|lease| lease.lease_token = "forged".to_owned()), Some(1)).await;
    refused_everywhere(s, &forge(|lease| lease.owner_id = "worker-b".to_owned()), Some(1)).await;
    refused_everywhere(s, &forge(|lease| lease.fencing_token = 2), Some(1)).await;
    // The genuine lease still commits: the refusals changed nothing.
    s.registry.append_event_fenced(&lease, step(1)).await.expect("the genuine lease appends");
    // Expiry is the registry's, not the presented lease's.
    s.clock.advance(TTL_MS);
    refused_everywhere(s, &forge(|lease| lease.expires_at_epoch_ms = u64::MAX), None).await;
}

async fn a_replay_under_a_stale_lease_is_refused(s: &Subject) {
    let old = register_and_claim(s, "p", "worker-a").await;
    let keyed = || step(1).with_replay_key("step-1");
    let first = s.registry.append_event_fenced(&old, keyed()).await.expect("keyed append");
    assert_eq!(first.event.sequence, 1);
    // Under the live lease the key replays the recorded event.
    let replayed = s.registry.append_event_fenced(&old, keyed()).await.expect("replay while live");
    assert_eq!(replayed.event, first.event);

    s.clock.advance(TTL_MS);
    let stale = s.registry.append_event_fenced(&old, keyed()).await;
    assert_eq!(fenced(stale, "p", "a replay under an expired lease"), (1, None));
    let new = s.registry.claim_process_lease("p", "worker-b", TTL_MS).await.expect("takeover");
    let stale = s.registry.append_event_fenced(&old, keyed()).await;
    assert_eq!(fenced(stale, "p", "a replay under a taken-over lease"), (1, Some(2)));
    // The new owner finds the step recorded: its replay returns it.
    let by_new = s.registry.append_event_fenced(&new, keyed()).await.expect("replay by the new owner");
    assert_eq!(by_new.event, first.event);

    // A completion that would only replay is refused too, once stale.
    let output = ProcessAwaitOutput::success(json!("done"));
    s.registry.complete_process_fenced(&new, output.clone()).await.expect("complete");
    let before = snapshot(s, "p").await;
    let stale = s.registry.complete_process_fenced(&old, output.clone()).await;
    assert_eq!(fenced(stale, "p", "a completion replay under the old lease"), (1, Some(2)));
    s.clock.advance(TTL_MS);
    let stale = s.registry.complete_process_fenced(&new, output).await;
    assert_eq!(fenced(stale, "p", "a completion replay under an expired lease"), (2, None));
    assert_eq!(snapshot(s, "p").await, before, "refused replays change nothing");
    assert_eq!(before.0.len(), 2, "one step and the terminal event");
}

async fn fenced_writes_on_an_unknown_process_are_unknown_process(s: &Subject) {
    let lease = register_and_claim(s, "p", "worker-a").await;
    let ghost = ProcessLease { process_id: "ghost".to_owned(), ..lease };
    let unknown = |result: Result<(), RegistryError>, what: &str| match result {
        Err(RegistryError::UnknownProcess { process_id }) => assert_eq!(process_id, "ghost", "{what}"),
        other => panic!("{what}: expected UnknownProcess, got {other:?}"),
    };
    unknown(s.registry.append_event_fenced(&ghost, step(1)).await.map(drop), "append");
    unknown(s.registry.set_process_wait_fenced(&ghost, wait_state(s)).await.map(drop), "set_wait");
    let output = ProcessAwaitOutput::success(json!(1));
    unknown(s.registry.complete_process_fenced(&ghost, output).await.map(drop), "complete");
    assert!(s.registry.get_process("ghost").await.is_none(), "nothing was created");
    assert!(s.registry.events_after("p", 0).await.expect("log").is_empty(), "the real process is untouched");
}

async fn a_stale_writer_racing_a_takeover_never_lands_after_it(s: &Subject) {
    race_a_stale_writer(s, Takeover::OtherOwnerAfterExpiry).await;
}

async fn a_stale_writer_racing_a_same_owner_reclaim_never_lands_after_it(s: &Subject) {
    race_a_stale_writer(s, Takeover::SameOwnerWhileLive).await;
}

async fn registration_notices_count_new_registrations(s: &Subject) {
    let Some(mut notices) = s.registry.registration_notices() else {
        assert_eq!(s.kind, Kind::Baseline, "only the baseline gives no registration notices");
        return;
    };
    assert_ne!(s.kind, Kind::Baseline, "the baseline cannot tell registrations");
    let before = *notices.borrow_and_update();
    s.registry.register_process(registration("p")).await.expect("register");
    tokio::time::timeout(PATIENCE, notices.changed()).await.expect("a notice").expect("the registry is up");
    assert_eq!(*notices.borrow_and_update(), before + 1, "one registration, one notice");
    for id in ["q", "r"] {
        s.registry.register_process(registration(id)).await.expect("register");
    }
    assert_eq!(*notices.borrow_and_update(), before + 3, "the counter counts registrations");
    // Registering an existing id again commits nothing new.
    s.registry.register_process(registration("p")).await.expect("an idempotent re-registration");
    assert!(!notices.has_changed().expect("the registry is up"), "a repeated registration is not a new one");
}

// ------------------------------------------------------------------ race

/// How the stale writer's lease is superseded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Takeover {
    /// The clock passes the ttl, then another owner claims (token 2).
    OtherOwnerAfterExpiry,
    /// The same owner claims again while the lease is live (token 2): no
    /// expiry protects anything here, only the fence check in the write.
    SameOwnerWhileLive,
}

/// Stale writers appending as fast as they can while the test supersedes their lease.
const STALE_WRITERS: usize = 8;
/// Stale events that land before the takeover.
const LANDED_BEFORE_TAKEOVER: u64 = 100;
/// Stale attempts started after the takeover's claim returned.
const ATTEMPTS_AFTER_TAKEOVER: u64 = 400;

/// What one stale writer saw.
#[derive(Default)]
struct StaleWrites {
    /// (sequence, whether the claim had returned before this append was sent).
    landed: Vec<(u64, bool)>,
    /// The current fencing token each refusal named.
    refusals: Vec<Option<u64>>,
}

/// Sound checks of "no stale write after the claim": (1) no stale append
/// *sent after the claim returned* succeeds; (2) every stale success has a
/// lower sequence than the new owner's marker, appended right after the
/// claim; (3) the log holds exactly the stale successes, then the marker,
/// and nothing after it although the stale writers kept trying.
async fn race_a_stale_writer(s: &Subject, takeover: Takeover) {
    let stale = register_and_claim(s, "p", "worker-a").await;
    let claimed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let landed = Arc::new(AtomicU64::new(0));
    let after_claim = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..STALE_WRITERS {
        let (registry, stale) = (Arc::clone(&s.registry), stale.clone());
        let (claimed, stop, landed, after_claim) =
            (Arc::clone(&claimed), Arc::clone(&stop), Arc::clone(&landed), Arc::clone(&after_claim));
        writers.push(tokio::spawn(async move {
            let mut seen = StaleWrites::default();
            let mut n = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                let sent_after_claim = claimed.load(Ordering::SeqCst);
                let request = ProcessEventAppendRequest::new("step", json!({"writer": writer, "n": n}));
                match registry.append_event_fenced(&stale, request).await {
                    Ok(result) => {
                        seen.landed.push((result.event.sequence, sent_after_claim));
                        landed.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(RegistryError::LeaseFenced { presented_fencing_token: 1, current_fencing_token, .. }) => {
                        seen.refusals.push(current_fencing_token);
                    }
                    Err(other) => panic!("stale writer {writer}: unexpected error {other:?}"),
                }
                if sent_after_claim {
                    after_claim.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
                tokio::task::yield_now().await;
            }
            seen
        }));
    }

    eventually("stale writes land before the takeover", || landed.load(Ordering::SeqCst) >= LANDED_BEFORE_TAKEOVER)
        .await;
    let fresh = match takeover {
        Takeover::OtherOwnerAfterExpiry => {
            s.clock.advance(TTL_MS);
            s.registry.claim_process_lease("p", "worker-b", TTL_MS).await.expect("takeover after expiry")
        }
        Takeover::SameOwnerWhileLive => {
            s.registry.claim_process_lease("p", "worker-a", TTL_MS).await.expect("reclaim while live")
        }
    };
    claimed.store(true, Ordering::SeqCst);
    assert_eq!(fresh.fencing_token, 2);
    let marker = ProcessEventAppendRequest::new("step", json!({"marker": true}));
    let marker = s.registry.append_event_fenced(&fresh, marker).await.expect("the new owner's marker").event.sequence;
    eventually("stale writers keep trying after the takeover", || {
        after_claim.load(Ordering::SeqCst) >= ATTEMPTS_AFTER_TAKEOVER
    })
    .await;
    stop.store(true, Ordering::SeqCst);

    let mut landed_sequences = Vec::new();
    for (writer, handle) in writers.into_iter().enumerate() {
        let seen = handle.await.expect("a stale writer panicked");
        for &(sequence, sent_after_claim) in &seen.landed {
            assert!(!sent_after_claim, "writer {writer}: a stale append sent after the claim landed at {sequence}");
            assert!(sequence < marker, "writer {writer}: stale event {sequence} landed after the marker {marker}");
        }
        for current in &seen.refusals {
            let allowed = match takeover {
                Takeover::OtherOwnerAfterExpiry => *current == Some(2) || current.is_none(),
                Takeover::SameOwnerWhileLive => *current == Some(2),
            };
            assert!(allowed, "writer {writer}: a refusal named {current:?}");
        }
        landed_sequences.extend(seen.landed.iter().map(|&(sequence, _)| sequence));
    }
    landed_sequences.sort_unstable();
    let log = s.registry.events_after("p", 0).await.expect("log");
    let expected: Vec<u64> = (1..marker).collect();
    assert_eq!(landed_sequences, expected, "the stale successes are exactly the events before the marker");
    assert_eq!(log.len() as u64, marker, "nothing landed after the marker");
    assert_eq!(log.last().map(|event| event.payload.clone()), Some(json!({"marker": true})));
}
