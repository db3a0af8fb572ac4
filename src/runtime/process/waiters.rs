//! The callers parked on one process, and the commits that answer them.
//!
//! A parked call is its reply port, kept here by waiter id: callers of
//! `wait_event_after` by event type (each with the sequence it waits
//! beyond), callers of `await_process` apart. The commit of an event
//! answers the waiters of its type whose cursor it passes; a terminal
//! commit answers every awaiter. Nothing here polls or keeps a timer; a
//! caller that gives up is removed by id.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::RegistryError;
use crate::events::{ProcessAwaitOutput, ProcessEvent};
use crate::runtime::call::Reply;
use crate::runtime::shared::Shared;

/// A caller parked for the first event of a type after `after`.
#[derive(Debug)]
struct EventWaiter {
    after: u64,
    reply: Reply<Arc<ProcessEvent>>,
}

/// Callers parked on one process.
#[derive(Debug)]
pub(crate) struct Waiters {
    shared: Arc<Shared>,
    by_type: HashMap<String, HashMap<u64, EventWaiter>>,
    type_of: HashMap<u64, String>,
    outputs: HashMap<u64, Reply<ProcessAwaitOutput>>,
}

impl Waiters {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared, by_type: HashMap::new(), type_of: HashMap::new(), outputs: HashMap::new() }
    }

    pub(super) fn len(&self) -> usize {
        self.type_of.len() + self.outputs.len()
    }

    pub(super) fn park_event(
        &mut self,
        event_type: String,
        after: u64,
        waiter_id: u64,
        reply: Reply<Arc<ProcessEvent>>,
    ) {
        self.type_of.insert(waiter_id, event_type.clone());
        self.by_type.entry(event_type).or_default().insert(waiter_id, EventWaiter { after, reply });
        self.shared.counters.parked(1);
    }

    pub(super) fn park_output(&mut self, waiter_id: u64, reply: Reply<ProcessAwaitOutput>) {
        self.outputs.insert(waiter_id, reply);
        self.shared.counters.parked(1);
    }

    pub(super) fn cancel(&mut self, waiter_id: u64) {
        let removed = match self.type_of.remove(&waiter_id) {
            Some(event_type) => {
                let removed = self.by_type.get_mut(&event_type).and_then(|ports| ports.remove(&waiter_id));
                if self.by_type.get(&event_type).is_some_and(HashMap::is_empty) {
                    self.by_type.remove(&event_type);
                }
                removed.is_some()
            }
            None => self.outputs.remove(&waiter_id).is_some(),
        };
        if removed {
            self.shared.counters.parked(-1);
        }
    }

    /// Answers every caller waiting for an event of `event.event_type`
    /// after a sequence below the new event's. Callers that asked for
    /// events after a sequence the log has not reached yet stay parked.
    pub(super) fn event_committed(&mut self, event: &Arc<ProcessEvent>) {
        if self.by_type.is_empty() {
            return;
        }
        let Some(waiters) = self.by_type.get_mut(&event.event_type) else {
            return;
        };
        let due: Vec<u64> =
            waiters.iter().filter(|(_, waiter)| waiter.after < event.sequence).map(|(&id, _)| id).collect();
        // Uncounted before answered: a woken caller never sees itself
        // still counted as parked.
        self.shared.counters.parked(-(due.len() as i64));
        for waiter_id in &due {
            if let Some(waiter) = waiters.remove(waiter_id) {
                // A caller that went away no longer needs the answer.
                let _ = waiter.reply.send(Ok(Arc::clone(event)));
            }
            self.type_of.remove(waiter_id);
        }
        if waiters.is_empty() {
            self.by_type.remove(&event.event_type);
        }
    }

    /// Answers every caller waiting for an event of a type `refused`
    /// names with `error()`, and forgets them.
    pub(super) fn refuse_events(&mut self, refused: impl Fn(&str) -> bool, error: impl Fn() -> RegistryError) {
        let types: Vec<String> = self.by_type.keys().filter(|event_type| refused(event_type)).cloned().collect();
        for event_type in types {
            let Some(waiters) = self.by_type.remove(&event_type) else { continue };
            self.shared.counters.parked(-(waiters.len() as i64));
            for (waiter_id, waiter) in waiters {
                self.type_of.remove(&waiter_id);
                let _ = waiter.reply.send(Err(error()));
            }
        }
    }

    pub(super) fn terminal_committed(&mut self, output: &ProcessAwaitOutput) {
        self.shared.counters.parked(-(self.outputs.len() as i64));
        for (_, port) in self.outputs.drain() {
            let _ = port.send(Ok(output.clone()));
        }
    }
}

impl Drop for Waiters {
    fn drop(&mut self) {
        // Dropping the ports tells each caller its actor is gone; the facade
        // turns that into `Stopped` (shutdown) or a transparent retry (restart).
        self.shared.counters.parked(-(self.len() as i64));
    }
}
