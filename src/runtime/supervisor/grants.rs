//! The session-grant index: which scopes may address which processes.
//!
//! Three indexes kept in step: scope -> (process -> descriptor), ordered so
//! a scope's grants list in process-id order; process -> scopes, so the
//! grants of one process are found without scanning every scope; and
//! session -> scopes, so deleting a session touches only its own frames. The
//! supervisor actor is the one writer of the live index and changes it only
//! after the store has committed the change; callers read it in their own
//! task (see [`PublishedGrants`]). This module is the data structure and
//! its rules, with no knowledge of actors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::model::{
    ProcessHandleDescriptor, ProcessHandleGrant, ProcessSessionDeleteReport, SessionScope, SessionScopeId,
};

/// The live grant index, written by the supervisor alone and read by any
/// caller: a read takes the read lock only to copy `Arc`s of the grants it
/// lists, and deep-copies them after letting it go. The lock is never held
/// across anything that can panic, so a poisoned lock still holds a whole
/// index.
#[derive(Debug, Default)]
pub(crate) struct PublishedGrants(RwLock<GrantIndex>);

impl PublishedGrants {
    /// The index, to read.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, GrantIndex> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index, to change (the supervisor only).
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, GrantIndex> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Deep copies of grants listed as `Arc`s.
pub(crate) fn owned_grants(grants: Vec<Arc<ProcessHandleGrant>>) -> Vec<ProcessHandleGrant> {
    grants.iter().map(|grant| ProcessHandleGrant::clone(grant)).collect()
}

/// Both grant indexes. A grant is kept whole, shared, so that listing one
/// copies a pointer.
#[derive(Clone, Debug, Default)]
pub(crate) struct GrantIndex {
    by_scope: HashMap<SessionScopeId, BTreeMap<String, Arc<ProcessHandleGrant>>>,
    by_process: HashMap<String, BTreeSet<SessionScopeId>>,
    by_session: HashMap<String, BTreeSet<SessionScopeId>>,
}

/// Which grants a session deletion removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RevokedGrants {
    /// How many grants were removed.
    pub revoked: usize,
    /// Processes that lost at least one grant, sorted and deduplicated.
    pub affected: Vec<String>,
}

impl GrantIndex {
    /// An empty index.
    #[cfg(test)]
    fn new() -> Self {
        Self::default()
    }

    /// Applies one committed change.
    pub fn apply(&mut self, change: &crate::store::GrantChange) {
        match change {
            crate::store::GrantChange::Granted { scope, process_id, descriptor } => {
                self.grant(scope, process_id, descriptor.clone());
            }
            crate::store::GrantChange::Revoked { scope_id, process_id } => {
                self.revoke(&SessionScopeId(scope_id.clone()), process_id);
            }
        }
    }

    /// Grants (or re-grants, replacing the descriptor) `process_id` to `scope`.
    pub fn grant(
        &mut self,
        scope: &SessionScope,
        process_id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> ProcessHandleGrant {
        let scope_id = scope.id();
        let grant =
            ProcessHandleGrant { session_id: scope.session_id.clone(), process_id: process_id.to_owned(), descriptor };
        self.by_scope.entry(scope_id.clone()).or_default().insert(process_id.to_owned(), Arc::new(grant.clone()));
        self.by_process.entry(process_id.to_owned()).or_default().insert(scope_id.clone());
        self.by_session.entry(scope.session_id.clone()).or_default().insert(scope_id);
        grant
    }

    /// Removes one grant; returns whether it existed.
    pub fn revoke(&mut self, scope_id: &SessionScopeId, process_id: &str) -> bool {
        let Some(grants) = self.by_scope.get_mut(scope_id) else {
            return false;
        };
        let Some(removed) = grants.remove(process_id) else {
            return false;
        };
        if grants.is_empty() {
            self.by_scope.remove(scope_id);
            if let Some(scopes) = self.by_session.get_mut(&removed.session_id) {
                scopes.remove(scope_id);
                if scopes.is_empty() {
                    self.by_session.remove(&removed.session_id);
                }
            }
        }
        if let Some(scopes) = self.by_process.get_mut(process_id) {
            scopes.remove(scope_id);
            if scopes.is_empty() {
                self.by_process.remove(process_id);
            }
        }
        true
    }

    /// The ids in `process_ids` that `scope_id` does not hold.
    pub fn missing(&self, scope_id: &SessionScopeId, process_ids: &[String]) -> Vec<String> {
        let grants = self.by_scope.get(scope_id);
        process_ids.iter().filter(|id| grants.is_none_or(|grants| !grants.contains_key(id.as_str()))).cloned().collect()
    }

    /// Moves each grant from `from` to `to`, keeping descriptors. All or
    /// nothing: returns the ids `from` does not hold, and moves nothing,
    /// when there are any.
    pub fn transfer(
        &mut self,
        from: &SessionScope,
        to: &SessionScope,
        process_ids: &[String],
    ) -> Result<(), Vec<String>> {
        let from_id = from.id();
        let missing = self.missing(&from_id, process_ids);
        if !missing.is_empty() {
            return Err(missing);
        }
        for process_id in process_ids {
            if let Some(descriptor) = self.descriptor(&from_id, process_id).cloned() {
                self.revoke(&from_id, process_id);
                self.grant(to, process_id, descriptor);
            }
        }
        Ok(())
    }

    /// The grants of one scope, in process-id order. O(its grants).
    pub fn grants_of_scope(&self, scope_id: &SessionScopeId) -> Vec<Arc<ProcessHandleGrant>> {
        self.by_scope.get(scope_id).map(|grants| grants.values().map(Arc::clone).collect()).unwrap_or_default()
    }

    /// The descriptor of one grant.
    pub fn descriptor(&self, scope_id: &SessionScopeId, process_id: &str) -> Option<&ProcessHandleDescriptor> {
        self.by_scope.get(scope_id)?.get(process_id).map(|grant| &grant.descriptor)
    }

    /// True when `scope_id` holds a grant for `process_id`.
    pub fn has(&self, scope_id: &SessionScopeId, process_id: &str) -> bool {
        self.by_scope.get(scope_id).is_some_and(|grants| grants.contains_key(process_id))
    }

    /// The grants of one process, sorted by session id (then scope id).
    /// O(its grants x log).
    pub fn grants_of_process(&self, process_id: &str) -> Vec<Arc<ProcessHandleGrant>> {
        let Some(scopes) = self.by_process.get(process_id) else {
            return Vec::new();
        };
        let mut grants: Vec<(&SessionScopeId, &Arc<ProcessHandleGrant>)> = scopes
            .iter()
            .filter_map(|scope_id| Some((scope_id, self.by_scope.get(scope_id)?.get(process_id)?)))
            .collect();
        grants.sort_by(|a, b| (&a.1.session_id, a.0).cmp(&(&b.1.session_id, b.0)));
        grants.into_iter().map(|(_, grant)| Arc::clone(grant)).collect()
    }

    /// True when any scope holds a grant for `process_id`.
    pub fn is_granted_anywhere(&self, process_id: &str) -> bool {
        self.by_process.contains_key(process_id)
    }

    /// The grants of every scope of `session_id` (all frames), as
    /// `(scope id, process id)`: what deleting the session revokes. Only
    /// grants stored for this very session count: the registry refuses
    /// scopes whose ids could collide, and should one slip in (say, from a
    /// store written before that rule), another session's grant under the
    /// same scope id is still not this session's to revoke.
    pub fn grants_of_session(&self, session_id: &str) -> Vec<(SessionScopeId, String)> {
        let Some(scopes) = self.by_session.get(session_id) else {
            return Vec::new();
        };
        scopes
            .iter()
            .flat_map(|scope_id| {
                self.by_scope.get(scope_id).into_iter().flat_map(move |grants| {
                    grants
                        .iter()
                        .filter(move |(_, grant)| grant.session_id == session_id)
                        .map(move |(process_id, _)| (scope_id.clone(), process_id.clone()))
                })
            })
            .collect()
    }

    /// Removes every grant of every scope of `session_id` (all frames).
    pub fn revoke_session(&mut self, session_id: &str) -> RevokedGrants {
        let mut revoked = 0;
        let mut affected = BTreeSet::new();
        for (scope_id, process_id) in self.grants_of_session(session_id) {
            if self.revoke(&scope_id, &process_id) {
                revoked += 1;
                affected.insert(process_id);
            }
        }
        RevokedGrants { revoked, affected: affected.into_iter().collect() }
    }

    /// Deletes a session's grants and reports, among the processes that lost
    /// one and are still live (`is_live`), which have no grant left
    /// (orphaned) and which are granted elsewhere (preserved). Both lists
    /// are sorted and deduplicated; acks are process-scoped, so no wake is
    /// deleted.
    pub fn delete_session(&mut self, session_id: &str, is_live: impl Fn(&str) -> bool) -> ProcessSessionDeleteReport {
        let revoked = self.revoke_session(session_id);
        let mut report = ProcessSessionDeleteReport {
            session_id: session_id.to_owned(),
            revoked_handle_count: revoked.revoked,
            ..ProcessSessionDeleteReport::default()
        };
        for process_id in revoked.affected.into_iter().filter(|id| is_live(id)) {
            if self.is_granted_anywhere(&process_id) {
                report.preserved_process_ids.push(process_id);
            } else {
                report.orphaned_process_ids.push(process_id);
            }
        }
        report
    }

    /// Number of grants.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_scope.values().map(BTreeMap::len).sum()
    }

    /// True when there are no grants.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.by_scope.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(text: &str) -> ProcessHandleDescriptor {
        ProcessHandleDescriptor { kind: None, label: Some(text.into()) }
    }

    #[test]
    fn grants_list_in_process_order_and_regrant_replaces() {
        let mut index = GrantIndex::new();
        let scope = SessionScope::new("s");
        index.grant(&scope, "b", label("1"));
        index.grant(&scope, "a", label("2"));
        index.grant(&scope, "b", label("3"));
        let grants = index.grants_of_scope(&scope.id());
        let ids: Vec<_> = grants.iter().map(|g| g.process_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(grants[1].descriptor, label("3"));
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn transfer_is_all_or_nothing_and_keeps_descriptors() {
        let mut index = GrantIndex::new();
        let (from, to) = (SessionScope::new("s"), SessionScope::with_frame("t", "f"));
        index.grant(&from, "a", label("x"));
        assert_eq!(index.transfer(&from, &to, &["a".into(), "b".into()]), Err(vec!["b".into()]));
        assert!(index.has(&from.id(), "a"));
        index.transfer(&from, &to, &["a".into()]).unwrap();
        assert!(!index.has(&from.id(), "a"));
        assert_eq!(index.grants_of_scope(&to.id())[0].descriptor, label("x"));
        assert_eq!(index.grants_of_scope(&to.id())[0].session_id, "t");
    }

    #[test]
    fn grants_of_process_sort_by_session() {
        let mut index = GrantIndex::new();
        index.grant(&SessionScope::new("z"), "p", label("z"));
        index.grant(&SessionScope::new("a"), "p", label("a"));
        index.grant(&SessionScope::with_frame("m", "f"), "p", label("m"));
        let sessions: Vec<_> = index.grants_of_process("p").into_iter().map(|g| g.session_id.clone()).collect();
        assert_eq!(sessions, ["a", "m", "z"]);
    }

    #[test]
    fn revoking_a_session_covers_every_frame_only_of_that_session() {
        let mut index = GrantIndex::new();
        index.grant(&SessionScope::new("s"), "a", label(""));
        index.grant(&SessionScope::with_frame("s", "f"), "b", label(""));
        index.grant(&SessionScope::new("s2"), "b", label(""));
        index.grant(&SessionScope::new("ss"), "c", label(""));
        let revoked = index.revoke_session("s");
        assert_eq!(revoked, RevokedGrants { revoked: 2, affected: vec!["a".into(), "b".into()] });
        assert!(!index.is_granted_anywhere("a"));
        assert!(index.is_granted_anywhere("b"));
        assert!(index.is_granted_anywhere("c"));
        assert!(index.grants_of_session("s").is_empty());
    }

    #[test]
    fn deleting_a_session_reports_orphaned_and_preserved_live_processes() {
        let mut index = GrantIndex::new();
        for process_id in ["done", "lonely", "shared"] {
            index.grant(&SessionScope::with_frame("s", "f"), process_id, label(""));
        }
        index.grant(&SessionScope::new("s"), "lonely", label(""));
        index.grant(&SessionScope::new("t"), "shared", label(""));
        let report = index.delete_session("s", |id| id != "done");
        assert_eq!(report.revoked_handle_count, 4);
        assert_eq!(report.orphaned_process_ids, ["lonely"]);
        assert_eq!(report.preserved_process_ids, ["shared"]);
        assert_eq!(report.deleted_wake_count, 0);
    }

    #[test]
    fn deleting_a_session_leaves_another_sessions_grant_under_a_colliding_scope_id() {
        let mut index = GrantIndex::new();
        index.grant(&SessionScope::with_frame("a", "b"), "p", label("framed"));
        index.grant(&SessionScope::new("a/frame:b"), "q", label("lookalike"));
        let report = index.delete_session("a/frame:b", |_| true);
        assert_eq!(report.revoked_handle_count, 1);
        assert!(index.has(&SessionScope::with_frame("a", "b").id(), "p"));
        assert_eq!(index.delete_session("a", |_| true).revoked_handle_count, 1);
        assert!(index.is_empty());
    }

    #[test]
    fn revoke_of_missing_grants_is_a_no_op() {
        let mut index = GrantIndex::new();
        assert!(!index.revoke(&SessionScope::new("s").id(), "p"));
        assert!(index.is_empty());
    }
}
