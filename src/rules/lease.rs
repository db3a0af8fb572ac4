//! Lease rules: one fenced, expiring, single-owner lease per process.
//!
//! A lease is live while `now < expires_at_epoch_ms`. Every grant takes the
//! next fencing token (`last + 1`), which is never reused: it survives the
//! release of the lease and a reopen of the store, so a worker that was
//! fenced out can always be told apart from its successor downstream.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::model::{ProcessLease, ProcessLeaseCompletion, PROCESS_LEASE_SCHEMA_VERSION};

/// The lease part of a process's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The current lease, if one was granted and not released. Boxed: most
    /// processes at rest hold none, and this keeps their state small.
    pub current: Option<Box<ProcessLease>>,
    /// The last fencing token handed out (0 before the first claim).
    pub last_fencing_token: u64,
}

/// True while `lease` has not expired at `now_ms`.
pub fn is_live(lease: &ProcessLease, now_ms: u64) -> bool {
    lease.expires_at_epoch_ms > now_ms
}

/// Grants `owner_id` a new lease, unless another owner's lease is live.
///
/// The caller checks that the process exists and is not terminal, and
/// supplies a fresh unguessable `lease_token`.
pub fn claim(
    state: &LeaseState,
    process_id: &str,
    owner_id: &str,
    ttl_ms: u64,
    now_ms: u64,
    lease_token: String,
) -> Result<ProcessLease, RegistryError> {
    if let Some(current) = &state.current {
        if current.owner_id != owner_id && is_live(current, now_ms) {
            return Err(RegistryError::LeaseHeld {
                process_id: process_id.to_owned(),
                owner_id: current.owner_id.clone(),
                expires_at_epoch_ms: current.expires_at_epoch_ms,
            });
        }
    }
    Ok(ProcessLease {
        schema_version: PROCESS_LEASE_SCHEMA_VERSION,
        process_id: process_id.to_owned(),
        owner_id: owner_id.to_owned(),
        lease_token,
        fencing_token: state.last_fencing_token.saturating_add(1),
        claimed_at_epoch_ms: now_ms,
        expires_at_epoch_ms: now_ms.saturating_add(ttl_ms),
    })
}

/// Extends the presented lease, which must be the current one
/// (owner, token and fencing token) and unexpired.
pub fn renew(
    state: &LeaseState,
    presented: &ProcessLease,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<ProcessLease, RegistryError> {
    match &state.current {
        Some(current)
            if current.lease_token == presented.lease_token
                && current.owner_id == presented.owner_id
                && current.fencing_token == presented.fencing_token
                && is_live(current, now_ms) =>
        {
            let mut renewed = ProcessLease::clone(current);
            renewed.expires_at_epoch_ms = now_ms.saturating_add(ttl_ms);
            Ok(renewed)
        }
        _ => Err(RegistryError::LeaseMissingOrExpired { process_id: presented.process_id.clone() }),
    }
}

/// Checks a fenced write: `presented` must be the current lease (owner,
/// lease token and fencing token) and unexpired at `now_ms`; otherwise
/// [`RegistryError::LeaseFenced`], naming the current live lease's fencing
/// token (`None` when no lease is live).
pub fn check_fence(state: &LeaseState, presented: &ProcessLease, now_ms: u64) -> Result<(), RegistryError> {
    let live = state.current.as_deref().filter(|current| is_live(current, now_ms));
    match live {
        Some(current)
            if current.lease_token == presented.lease_token
                && current.owner_id == presented.owner_id
                && current.fencing_token == presented.fencing_token =>
        {
            Ok(())
        }
        _ => Err(RegistryError::LeaseFenced {
            process_id: presented.process_id.clone(),
            presented_fencing_token: presented.fencing_token,
            current_fencing_token: live.map(|current| current.fencing_token),
        }),
    }
}

/// The state after releasing `completion`'s lease, or `None` when the
/// completion is stale (its token is not the current lease's): a no-op.
pub fn release(state: &LeaseState, completion: &ProcessLeaseCompletion) -> Option<LeaseState> {
    let current = state.current.as_ref()?;
    (current.lease_token == completion.lease_token)
        .then_some(LeaseState { current: None, last_fencing_token: state.last_fencing_token })
}

/// The state after granting `lease`.
pub fn granted(state: &LeaseState, lease: ProcessLease) -> LeaseState {
    LeaseState { last_fencing_token: state.last_fencing_token.max(lease.fencing_token), current: Some(Box::new(lease)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_as(state: &LeaseState, owner: &str, ttl: u64, now: u64) -> Result<ProcessLease, RegistryError> {
        claim(state, "p", owner, ttl, now, format!("token-{owner}-{now}"))
    }

    #[test]
    fn first_claim_gets_fencing_token_one() {
        let lease = claim_as(&LeaseState::default(), "a", 100, 10).unwrap();
        assert_eq!((lease.fencing_token, lease.claimed_at_epoch_ms, lease.expires_at_epoch_ms), (1, 10, 110));
    }

    #[test]
    fn a_live_lease_fences_other_owners_until_it_expires() {
        let state = granted(&LeaseState::default(), claim_as(&LeaseState::default(), "a", 100, 10).unwrap());
        let err = claim_as(&state, "b", 100, 109).unwrap_err();
        assert!(err.to_string().contains("already leased by a until 110"), "{err}");
        let taken = claim_as(&state, "b", 100, 110).unwrap();
        assert_eq!(taken.fencing_token, 2);
    }

    #[test]
    fn the_same_owner_reclaims_and_bumps_the_token() {
        let state = granted(&LeaseState::default(), claim_as(&LeaseState::default(), "a", 100, 10).unwrap());
        assert_eq!(claim_as(&state, "a", 100, 20).unwrap().fencing_token, 2);
    }

    #[test]
    fn ttl_zero_is_already_expired_and_huge_ttls_saturate() {
        let state = granted(&LeaseState::default(), claim_as(&LeaseState::default(), "a", 0, 10).unwrap());
        assert!(claim_as(&state, "b", 5, 10).is_ok());
        let forever = claim_as(&LeaseState::default(), "a", u64::MAX, 10).unwrap();
        assert_eq!(forever.expires_at_epoch_ms, u64::MAX);
    }

    #[test]
    fn renew_requires_the_current_unexpired_lease() {
        let lease = claim_as(&LeaseState::default(), "a", 100, 10).unwrap();
        let state = granted(&LeaseState::default(), lease.clone());
        let renewed = renew(&state, &lease, 50, 60).unwrap();
        assert_eq!(renewed.expires_at_epoch_ms, 110);
        assert_eq!(renewed.fencing_token, lease.fencing_token);
        let err = renew(&state, &lease, 50, 110).unwrap_err();
        assert!(err.to_string().contains("missing or expired"));
        let mut forged = lease.clone();
        forged.lease_token = "other".into();
        assert!(renew(&state, &forged, 50, 60).is_err());
        assert!(renew(&LeaseState::default(), &lease, 50, 60).is_err());
    }

    #[test]
    fn a_fence_holds_only_for_the_current_unexpired_lease() {
        let first = claim_as(&LeaseState::default(), "a", 100, 10).unwrap();
        let state = granted(&LeaseState::default(), first.clone());
        assert_eq!(check_fence(&state, &first, 109), Ok(()));
        let fenced = |state: &LeaseState, lease: &ProcessLease, now| match check_fence(state, lease, now) {
            Err(RegistryError::LeaseFenced { presented_fencing_token, current_fencing_token, .. }) => {
                (presented_fencing_token, current_fencing_token)
            }
            other => panic!("expected LeaseFenced, got {other:?}"),
        };
        // Expired: nothing is live.
        assert_eq!(fenced(&state, &first, 110), (1, None));
        // Taken over: the newer lease's token is named.
        let second = claim_as(&state, "b", 100, 110).unwrap();
        let state = granted(&state, second.clone());
        assert_eq!(fenced(&state, &first, 111), (1, Some(2)));
        assert_eq!(check_fence(&state, &second, 111), Ok(()));
        // Same tokens under another owner, or another fencing token: refused.
        let mut forged = second.clone();
        forged.owner_id = "a".into();
        assert_eq!(fenced(&state, &forged, 111), (2, Some(2)));
        let mut forged = second.clone();
        forged.fencing_token = 1;
        assert_eq!(fenced(&state, &forged, 111), (1, Some(2)));
        // Released: nothing is live.
        let released = release(&state, &ProcessLeaseCompletion::from_lease(&second)).unwrap();
        assert_eq!(fenced(&released, &second, 111), (2, None));
    }

    #[test]
    fn release_keeps_the_fencing_token_and_ignores_stale_completions() {
        let first = claim_as(&LeaseState::default(), "a", 100, 10).unwrap();
        let state = granted(&LeaseState::default(), first.clone());
        let second = claim_as(&state, "a", 100, 20).unwrap();
        let state = granted(&state, second.clone());
        assert!(release(&state, &ProcessLeaseCompletion::from_lease(&first)).is_none());
        let released = release(&state, &ProcessLeaseCompletion::from_lease(&second)).unwrap();
        assert_eq!(released.current, None);
        assert_eq!(released.last_fencing_token, 2);
        assert_eq!(claim_as(&released, "b", 1, 30).unwrap().fencing_token, 3);
        assert!(release(&released, &ProcessLeaseCompletion::from_lease(&second)).is_none());
    }
}
