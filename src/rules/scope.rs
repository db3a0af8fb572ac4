//! Session scopes as grant keys: which session and frame ids are accepted.
//!
//! Grants are keyed by [`SessionScope::id`], whose format the specification
//! fixes: `session:{session_id}`, or `session:{session_id}/frame:{frame}`
//! for a non-empty frame. Taken as is, that format is ambiguous: session
//! `a/frame:b` and session `a` with frame `b` would share the key
//! `session:a/frame:b`, so deleting one session would revoke the other's
//! grants. The registry keeps the format and refuses the ids that make it
//! ambiguous, wherever a scope or a session id comes in (grants, revokes,
//! transfers, grant listings and checks, session deletion, and the wake
//! targets of registrations and appends):
//!
//! - a session id that is empty or only whitespace: it names no session;
//! - a session id or a frame id that contains [`FRAME_SEPARATOR`];
//! - a session id or a frame id longer than `max_id_bytes`
//!   ([`RegistryError::LimitExceeded`]; the others are
//!   [`RegistryError::InvalidScope`]).
//!
//! With those refused, the separator occurs in a scope id exactly once when
//! the scope has a frame and never otherwise (the separator's `/` is its
//! only slash, so no occurrence can straddle the end of the session id), so
//! two scopes share an id only when they are the same scope. An empty frame
//! is no frame, as the specification says: `SessionScope::with_frame(s, "")`
//! and `SessionScope::new(s)` are one scope.

use crate::error::RegistryError;
use crate::model::SessionScope;
pub use crate::model::FRAME_SEPARATOR;
use crate::rules::limits::{refuse_nul, truncated, Limits};

/// Refuses a scope whose id could be another scope's, or whose ids are
/// longer than the limit. `process_id` is the process the call is about
/// (empty for calls about no process), for the error.
pub fn check_scope(limits: &Limits, process_id: &str, scope: &SessionScope) -> Result<(), RegistryError> {
    check_session_id(limits, process_id, &scope.session_id)?;
    if let Some(frame) = scope.agent_frame_id.as_deref() {
        limits.check_id(process_id, "agent frame id bytes", frame)?;
        refuse_nul(process_id, "agent frame id", frame)?;
        if frame.contains(FRAME_SEPARATOR) {
            return Err(invalid(process_id, &scope.session_id, "the agent frame id contains `/frame:`"));
        }
    }
    Ok(())
}

/// Refuses a grant descriptor whose kind is longer than an id may be, or
/// whose label is longer than a payload may be: a grant is kept in memory,
/// written in a group commit and copied by every listing.
pub fn check_descriptor(
    limits: &Limits,
    process_id: &str,
    descriptor: &crate::model::ProcessHandleDescriptor,
) -> Result<(), RegistryError> {
    if let Some(kind) = descriptor.kind.as_deref() {
        limits.check_id(process_id, "descriptor kind bytes", kind)?;
    }
    if let Some(label) = descriptor.label.as_deref() {
        limits.check_payload_bytes(process_id, label.len())?;
    }
    Ok(())
}

/// Refuses a session id that is empty, contains [`FRAME_SEPARATOR`], or is
/// longer than the limit.
pub fn check_session_id(limits: &Limits, process_id: &str, session_id: &str) -> Result<(), RegistryError> {
    limits.check_id(process_id, "session id bytes", session_id)?;
    refuse_nul(process_id, "session id", session_id)?;
    if session_id.trim().is_empty() {
        return Err(invalid(process_id, session_id, "the session id is empty"));
    }
    if session_id.contains(FRAME_SEPARATOR) {
        return Err(invalid(process_id, session_id, "the session id contains `/frame:`"));
    }
    Ok(())
}

fn invalid(process_id: &str, session_id: &str, reason: &str) -> RegistryError {
    RegistryError::InvalidScope {
        process_id: truncated(process_id),
        session_id: truncated(session_id),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scope: &SessionScope) -> Result<(), RegistryError> {
        check_scope(&Limits::default(), "p", scope)
    }

    #[test]
    fn the_separator_is_refused_in_session_and_frame_ids() {
        let lookalike = SessionScope::new("a/frame:b");
        assert_eq!(lookalike.id(), SessionScope::with_frame("a", "b").id(), "the ambiguity this rule removes");
        assert!(matches!(check(&lookalike), Err(RegistryError::InvalidScope { .. })));
        assert!(matches!(check(&SessionScope::with_frame("a", "b/frame:c")), Err(RegistryError::InvalidScope { .. })));
        assert!(matches!(check(&SessionScope::new("")), Err(RegistryError::InvalidScope { .. })));
        assert!(matches!(check(&SessionScope::new(" \t")), Err(RegistryError::InvalidScope { .. })));
        let err = check_session_id(&Limits::default(), "", "x/frame:y").unwrap_err();
        assert!(err.to_string().contains("x/frame:y"), "{err}");
    }

    #[test]
    fn near_misses_of_the_separator_are_accepted() {
        for (session, frame) in [("a/frame", "b"), ("a", "frame:b"), ("a/", "/frame"), ("/frame", ":"), ("a:b/c", "")] {
            assert!(check(&SessionScope::with_frame(session, frame)).is_ok(), "{session} / {frame}");
        }
        assert!(check(&SessionScope::new("s")).is_ok());
    }

    #[test]
    fn ids_longer_than_the_limit_are_limit_exceeded() {
        let limits = Limits { max_id_bytes: 4, ..Limits::default() };
        let long = SessionScope::new("sessions");
        assert!(matches!(check_scope(&limits, "p", &long), Err(RegistryError::LimitExceeded { .. })));
        let long_frame = SessionScope::with_frame("s", "frames");
        assert!(matches!(check_scope(&limits, "p", &long_frame), Err(RegistryError::LimitExceeded { .. })));
    }
}
