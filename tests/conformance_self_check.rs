//! The conformance suite catches broken registries.
//!
//! A decorator around the baseline injects one fault at a time; the suite
//! must report the scenarios that pin the broken rule (by name), turn a
//! panic into a named failure, and name a lost wakeup instead of hanging.

use std::sync::Arc;

use async_trait::async_trait;
use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::testing::conformance::{self, Scenario};
use process_registry::{
    PluginError, ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult,
    ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry, ProcessLease,
    ProcessLeaseCompletion, ProcessListFilter, ProcessRecord, ProcessRegistration, ProcessRegistry,
    ProcessSessionDeleteReport, SessionScope, WaitState,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Appends ignore replay keys.
    ReplayIgnored,
    /// `recent_events` returns newest first.
    RecentDescending,
    /// `ack_wake` panics.
    AckPanics,
    /// `wait_event_after` never wakes a parked caller.
    LostWakeup,
    /// `list_processes` ignores the status filter.
    ListIgnoresStatus,
}

struct Faulty {
    inner: GlobalLockRegistry,
    fault: Fault,
}

#[async_trait]
impl ProcessRegistry for Faulty {
    async fn register_process(&self, registration: ProcessRegistration) -> Result<ProcessRecord, PluginError> {
        self.inner.register_process(registration).await
    }
    async fn set_external_ref(&self, p: &str, r: ProcessExternalRef) -> Result<ProcessRecord, PluginError> {
        self.inner.set_external_ref(p, r).await
    }
    async fn grant_handle(
        &self,
        s: &SessionScope,
        p: &str,
        d: ProcessHandleDescriptor,
    ) -> Result<ProcessHandleGrant, PluginError> {
        self.inner.grant_handle(s, p, d).await
    }
    async fn revoke_handle(&self, s: &SessionScope, p: &str) -> Result<(), PluginError> {
        self.inner.revoke_handle(s, p).await
    }
    async fn transfer_handle_grants(
        &self,
        f: &SessionScope,
        t: &SessionScope,
        ids: &[String],
    ) -> Result<(), PluginError> {
        self.inner.transfer_handle_grants(f, t, ids).await
    }
    async fn list_handle_grants(&self, s: &SessionScope) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        self.inner.list_handle_grants(s).await
    }
    async fn handle_grants_for_process(&self, p: &str) -> Result<Vec<ProcessHandleGrant>, PluginError> {
        self.inner.handle_grants_for_process(p).await
    }
    async fn delete_session_process_state(&self, s: &str) -> Result<ProcessSessionDeleteReport, PluginError> {
        self.inner.delete_session_process_state(s).await
    }
    async fn append_event(
        &self,
        p: &str,
        mut request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        if self.fault == Fault::ReplayIgnored {
            if let Some(key) = request.replay.as_mut() {
                // Unique per call: replays never match.
                *key = format!("{key}-{}", uuid_like());
            }
        }
        self.inner.append_event(p, request).await
    }
    async fn events_after(&self, p: &str, n: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        self.inner.events_after(p, n).await
    }
    async fn count_events_through(&self, p: &str, t: &str, n: u64) -> Result<u64, PluginError> {
        self.inner.count_events_through(p, t, n).await
    }
    async fn recent_events(&self, p: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        let mut events = self.inner.recent_events(p, limit).await?;
        if self.fault == Fault::RecentDescending {
            events.reverse();
        }
        Ok(events)
    }
    async fn wake_events_after(&self, p: &str, n: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        self.inner.wake_events_after(p, n).await
    }
    async fn wait_event_after(&self, p: &str, t: &str, n: u64) -> Result<ProcessEvent, PluginError> {
        if self.fault == Fault::LostWakeup {
            let existing = self.inner.events_after(p, n).await?;
            return match existing.into_iter().find(|event| event.event_type == t) {
                Some(event) => Ok(event),
                None => std::future::pending().await,
            };
        }
        self.inner.wait_event_after(p, t, n).await
    }
    async fn await_process(&self, p: &str) -> Result<ProcessAwaitOutput, PluginError> {
        self.inner.await_process(p).await
    }
    async fn complete_process(&self, p: &str, o: ProcessAwaitOutput) -> Result<ProcessRecord, PluginError> {
        self.inner.complete_process(p, o).await
    }
    async fn set_process_wait(&self, p: &str, w: WaitState) -> Result<ProcessRecord, PluginError> {
        self.inner.set_process_wait(p, w).await
    }
    async fn clear_process_wait(&self, p: &str) -> Result<ProcessRecord, PluginError> {
        self.inner.clear_process_wait(p).await
    }
    async fn get_process(&self, p: &str) -> Option<ProcessRecord> {
        self.inner.get_process(p).await
    }
    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError> {
        if self.fault == Fault::ListIgnoresStatus {
            return self
                .inner
                .list_processes(&ProcessListFilter { status: Default::default(), ..filter.clone() })
                .await;
        }
        self.inner.list_processes(filter).await
    }
    async fn ack_wake(&self, p: &str, n: u64) -> Result<(), PluginError> {
        assert!(self.fault != Fault::AckPanics, "injected ack_wake panic");
        self.inner.ack_wake(p, n).await
    }
    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError> {
        self.inner.list_non_terminal().await
    }
    async fn claim_process_lease(&self, p: &str, o: &str, ttl: u64) -> Result<ProcessLease, PluginError> {
        self.inner.claim_process_lease(p, o, ttl).await
    }
    async fn renew_process_lease(&self, lease: &ProcessLease, ttl: u64) -> Result<ProcessLease, PluginError> {
        self.inner.renew_process_lease(lease, ttl).await
    }
    async fn complete_process_lease(&self, c: &ProcessLeaseCompletion) -> Result<(), PluginError> {
        self.inner.complete_process_lease(c).await
    }
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn named(names: &[&str]) -> Vec<Scenario> {
    let all = conformance::scenarios();
    names
        .iter()
        .map(|name| {
            *all.iter().find(|scenario| scenario.name == *name).unwrap_or_else(|| panic!("no scenario named {name}"))
        })
        .collect()
}

async fn failures_with(fault: Fault, names: &[&str]) -> Vec<(String, String)> {
    let make =
        || async move { Arc::new(Faulty { inner: GlobalLockRegistry::new(), fault }) as Arc<dyn ProcessRegistry> };
    conformance::check(make, &named(names))
        .await
        .into_iter()
        .map(|failure| (failure.name.to_owned(), failure.message))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_replay_keys_are_caught() {
    let failures = failures_with(
        Fault::ReplayIgnored,
        &[
            "append_replay_with_same_payload_returns_original_event",
            "cancel_requested_request_repeat_is_idempotent",
            "complete_process_repeat_is_idempotent",
            "concurrent_replayed_appends_commit_once",
            "append_assigns_gapless_sequences_from_one",
        ],
    )
    .await;
    let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "append_replay_with_same_payload_returns_original_event",
            "cancel_requested_request_repeat_is_idempotent",
            "complete_process_repeat_is_idempotent",
            "concurrent_replayed_appends_commit_once",
        ],
        "{failures:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_recent_order_is_caught() {
    let failures = failures_with(Fault::RecentDescending, &["recent_events_returns_last_events_ascending"]).await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].1.contains("recent_events"), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_status_filter_is_caught() {
    let failures = failures_with(
        Fault::ListIgnoresStatus,
        &["list_processes_filters_by_status", "list_processes_defaults_to_running_ids_ascending"],
    )
    .await;
    let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["list_processes_filters_by_status"], "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_scenario_is_reported_and_does_not_hide_others() {
    let failures = failures_with(
        Fault::AckPanics,
        &["ack_wake_is_idempotent", "append_assigns_gapless_sequences_from_one", "acks_survive_session_deletion"],
    )
    .await;
    let names: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["ack_wake_is_idempotent", "acks_survive_session_deletion"], "{failures:#?}");
    assert!(failures.iter().all(|(_, message)| message.contains("panicked")), "{failures:#?}");
    assert!(failures[0].1.contains("injected ack_wake panic"), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_wakeup_is_a_named_failure_not_a_hang() {
    let failures = failures_with(Fault::LostWakeup, &["wait_event_after_parks_until_a_matching_append"]).await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].1.contains("lost wakeup"), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "conformance scenarios failed")]
async fn run_panics_listing_failures() {
    conformance::run_matching(
        || async {
            Arc::new(Faulty { inner: GlobalLockRegistry::new(), fault: Fault::RecentDescending })
                as Arc<dyn ProcessRegistry>
        },
        |name| name == "recent_events_returns_last_events_ascending",
    )
    .await;
}
