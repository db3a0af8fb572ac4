//! The commits a process actor has handed to its store and not yet seen
//! durable, and the answers that wait behind them.
//!
//! A durable store answers a commit a few milliseconds after the actor
//! planned it. The actor does not wait: it queues the commit here with the
//! answer it owes its caller, and goes on planning later calls on top of
//! it. Answers leave strictly in plan order, each once every commit ahead
//! of it (and its own) is durable, so no caller learns of a change that
//! could still be lost, and a call planned on a pending change (a replay of
//! a pending event, a refusal because of a pending terminal event) is
//! answered only once that change is durable. The store answers one
//! submitter's commits in order, so completions arrive in ticket order.

use std::collections::VecDeque;

use crate::error::RegistryError;
use crate::store::ProcessChange;

/// Sends a caller its answer: `Ok(())` sends what was planned, an error
/// replaces it.
pub(super) type Answer = Box<dyn FnOnce(Result<(), RegistryError>) + Send>;

/// One entry: a commit in flight, or an answer waiting for the commits ahead.
struct Entry {
    /// The commit's ticket; `None` for an answer that commits nothing.
    ticket: Option<u64>,
    /// Whether the commit is durable (always for answers without a commit).
    durable: bool,
    changes: Vec<ProcessChange>,
    answer: Answer,
}

/// The queue of one process actor.
#[derive(Default)]
pub(super) struct Pipeline {
    next_ticket: u64,
    entries: VecDeque<Entry>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("entries", &self.entries.len()).finish()
    }
}

/// What leaves the queue once a commit is durable, in order.
pub(super) struct Settled {
    /// The changes now durable.
    pub(super) changes: Vec<ProcessChange>,
    /// The answer to send.
    pub(super) answer: Answer,
}

impl Pipeline {
    /// True when nothing is in flight or waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A ticket for the next commit.
    pub(super) fn next_ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Queues a commit in flight.
    pub(super) fn push_commit(&mut self, ticket: u64, changes: Vec<ProcessChange>, answer: Answer) {
        self.entries.push_back(Entry { ticket: Some(ticket), durable: false, changes, answer });
    }

    /// Queues an answer behind everything in flight.
    pub(super) fn push_answer(&mut self, answer: Answer) {
        self.entries.push_back(Entry { ticket: None, durable: true, changes: Vec::new(), answer });
    }

    /// Marks `ticket` durable and returns every entry that may now leave,
    /// in order. An unknown ticket (its entry was failed already) changes
    /// nothing.
    pub(super) fn durable(&mut self, ticket: u64) -> Vec<Settled> {
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.ticket == Some(ticket)) {
            entry.durable = true;
        }
        let mut settled = Vec::new();
        while self.entries.front().is_some_and(|entry| entry.durable) {
            if let Some(entry) = self.entries.pop_front() {
                settled.push(Settled { changes: entry.changes, answer: entry.answer });
            }
        }
        settled
    }

    /// Whether `ticket` is still queued.
    pub(super) fn holds(&self, ticket: u64) -> bool {
        self.entries.iter().any(|entry| entry.ticket == Some(ticket))
    }

    /// Fails every entry with `error` (the store lost a commit; everything
    /// planned on top of it is void).
    pub(super) fn fail_all(&mut self, error: &RegistryError) {
        for entry in self.entries.drain(..) {
            (entry.answer)(Err(error.clone()));
        }
    }
}
