//! Leases: claim, renew and complete, fenced by ever-growing tokens.
//!
//! Pins the rule for leases in section 4 of the specification. Claiming
//! fails for an unknown or terminal process and while another owner holds
//! an unexpired lease (`already leased by {owner} until {t}`); a grant takes
//! fencing token last + 1, a fresh lease token and `expires_at = now + ttl`,
//! so a ttl of 0 is already expired and can be taken over. The same owner
//! re-claiming bumps the token. A renewal needs the current lease token and
//! an unexpired lease; a completion with a stale token is a silent no-op,
//! and a claim after a completion gets a higher fencing token.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::model::{ProcessLeaseCompletion, PROCESS_LEASE_SCHEMA_VERSION};

use super::support::{
    ensure, ensure_eq, ensure_err, ensure_names, log, scenario_list, setup, standard, Ctx, Reg, LONG_TTL,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        claim_lease_unknown_process_errors,
        claim_lease_terminal_process_errors,
        claim_lease_grants_first_fencing_token_and_expiry,
        claim_lease_held_by_other_owner_errors_already_leased,
        claim_lease_ttl_zero_is_expired_and_can_be_taken_over,
        claim_lease_same_owner_reclaim_bumps_fencing_token,
        renew_lease_extends_and_stale_token_fails_missing_or_expired,
        complete_lease_with_stale_token_is_a_noop,
        complete_lease_then_claim_gets_higher_fencing_token,
        lease_tokens_differ_between_claims,
    ]
}

async fn claim_lease_unknown_process_errors(r: Reg) -> ScenarioResult {
    let err = ensure_err!(
        r.claim_process_lease("proc-ghost", "worker-1", LONG_TTL).await,
        RegistryError::UnknownProcess { .. },
        "claiming a lease on an unknown process"
    );
    ensure_names(&err, "proc-ghost", "claim on an unknown process")
}

async fn claim_lease_terminal_process_errors(r: Reg) -> ScenarioResult {
    let id = "proc-lease-done";
    setup(&r, standard(id)).await?;
    r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-1", LONG_TTL).await,
        RegistryError::AlreadyTerminal { .. },
        "claiming a lease on a terminal process"
    );
    ensure_names(&err, id, "claim on a terminal process")
}

async fn claim_lease_grants_first_fencing_token_and_expiry(r: Reg) -> ScenarioResult {
    let id = "proc-lease";
    setup(&r, standard(id)).await?;
    let lease = r.claim_process_lease(id, "worker-1", LONG_TTL).await.ctx("claim")?;
    ensure_eq!(lease.schema_version, PROCESS_LEASE_SCHEMA_VERSION, "schema_version");
    ensure_eq!(lease.process_id, id, "lease process_id");
    ensure_eq!(lease.owner_id, "worker-1", "lease owner_id");
    ensure_eq!(lease.fencing_token, 1, "the first fencing token");
    ensure!(!lease.lease_token.is_empty(), "the lease token must not be empty");
    ensure!(lease.claimed_at_epoch_ms > 0, "claimed_at_epoch_ms must be set");
    ensure_eq!(lease.expires_at_epoch_ms, lease.claimed_at_epoch_ms + LONG_TTL, "expires_at = claimed_at + ttl");
    ensure!(log(&r, id).await?.is_empty(), "claiming a lease must not append events");
    Ok(())
}

async fn claim_lease_held_by_other_owner_errors_already_leased(r: Reg) -> ScenarioResult {
    let id = "proc-lease-held";
    setup(&r, standard(id)).await?;
    let held = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim by worker-a")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-b", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "claiming a live lease of another owner"
    );
    ensure_names(&err, id, "lease held")?;
    let message = err.to_string();
    ensure!(message.contains("already leased"), "the message must contain `already leased`: {message}");
    ensure!(message.contains("worker-a"), "the message should name the current owner: {message}");
    ensure!(
        message.contains(&held.expires_at_epoch_ms.to_string()),
        "the message should name the expiry {}: {message}",
        held.expires_at_epoch_ms
    );
    // The holder's lease is intact.
    r.renew_process_lease(&held, LONG_TTL).await.ctx("renewing the held lease after a refused claim")?;
    Ok(())
}

async fn claim_lease_ttl_zero_is_expired_and_can_be_taken_over(r: Reg) -> ScenarioResult {
    let id = "proc-lease-zero";
    setup(&r, standard(id)).await?;
    let expired = r.claim_process_lease(id, "worker-a", 0).await.ctx("claim with ttl 0")?;
    ensure_eq!(expired.expires_at_epoch_ms, expired.claimed_at_epoch_ms, "ttl 0 expires at claim time");
    let taken = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("taking over an expired lease")?;
    ensure_eq!(taken.owner_id, "worker-b", "new owner");
    ensure!(
        taken.fencing_token > expired.fencing_token,
        "the takeover's fencing token {} must exceed {}",
        taken.fencing_token,
        expired.fencing_token
    );
    ensure!(taken.lease_token != expired.lease_token, "the takeover must get a new lease token");
    let err = ensure_err!(
        r.renew_process_lease(&expired, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing the superseded lease"
    );
    ensure_names(&err, id, "superseded renew")?;
    Ok(())
}

async fn claim_lease_same_owner_reclaim_bumps_fencing_token(r: Reg) -> ScenarioResult {
    let id = "proc-lease-reclaim";
    setup(&r, standard(id)).await?;
    let first = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("first claim")?;
    let second = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("reclaim by the same owner")?;
    ensure_eq!(second.fencing_token, first.fencing_token + 1, "reclaim bumps the fencing token");
    ensure_eq!(second.owner_id, "worker-a", "reclaim owner");
    ensure!(second.lease_token != first.lease_token, "reclaim issues a new lease token");
    ensure_err!(
        r.renew_process_lease(&first, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing the lease replaced by the reclaim"
    );
    r.renew_process_lease(&second, LONG_TTL).await.ctx("renewing the reclaimed lease")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-b", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "another owner while the reclaimed lease is live"
    );
    ensure_names(&err, id, "lease held")?;
    Ok(())
}

async fn renew_lease_extends_and_stale_token_fails_missing_or_expired(r: Reg) -> ScenarioResult {
    let id = "proc-lease-renew";
    setup(&r, standard(id)).await?;
    let lease = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim")?;
    let renewed = r.renew_process_lease(&lease, 2 * LONG_TTL).await.ctx("renew")?;
    ensure_eq!(renewed.process_id, id, "renewed process id");
    ensure_eq!(renewed.owner_id, "worker-a", "renewed owner");
    ensure_eq!(renewed.fencing_token, lease.fencing_token, "renew keeps the fencing token");
    ensure!(
        renewed.expires_at_epoch_ms >= lease.expires_at_epoch_ms + LONG_TTL,
        "renew with twice the ttl must extend the expiry: {} -> {}",
        lease.expires_at_epoch_ms,
        renewed.expires_at_epoch_ms
    );
    let renewed_again = r.renew_process_lease(&renewed, LONG_TTL).await.ctx("renewing the renewed lease")?;
    ensure_eq!(renewed_again.fencing_token, lease.fencing_token, "fencing token after two renews");
    let mut forged = renewed_again.clone();
    forged.lease_token = "forged-token".to_owned();
    let err = ensure_err!(
        r.renew_process_lease(&forged, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing with a stale token"
    );
    ensure_names(&err, id, "stale renew")?;
    ensure!(err.to_string().contains("missing or expired"), "the message must contain `missing or expired`: {err}");
    // An expired lease cannot be renewed.
    let other = "proc-lease-renew-expired";
    setup(&r, standard(other)).await?;
    let expired = r.claim_process_lease(other, "worker-a", 0).await.ctx("claim with ttl 0")?;
    let err = ensure_err!(
        r.renew_process_lease(&expired, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing an expired lease"
    );
    ensure!(err.to_string().contains("missing or expired"), "the message must contain `missing or expired`: {err}");
    // A released lease cannot be renewed.
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&renewed_again)).await.ctx("release")?;
    ensure_err!(
        r.renew_process_lease(&renewed_again, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing a released lease"
    );
    Ok(())
}

async fn complete_lease_with_stale_token_is_a_noop(r: Reg) -> ScenarioResult {
    let id = "proc-lease-stale";
    setup(&r, standard(id)).await?;
    let stale = r.claim_process_lease(id, "worker-a", 0).await.ctx("claim with ttl 0")?;
    let current = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("takeover")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&stale))
        .await
        .ctx("stale completion (must be a silent no-op)")?;
    let forged = ProcessLeaseCompletion { process_id: id.to_owned(), lease_token: "forged".to_owned() };
    r.complete_process_lease(&forged).await.ctx("forged completion (must be a silent no-op)")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-c", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "the current lease must still block others after a stale completion"
    );
    ensure!(err.to_string().contains("worker-b"), "the current owner is still worker-b: {err}");
    r.renew_process_lease(&current, LONG_TTL).await.ctx("the current lease still renews")?;
    Ok(())
}

async fn complete_lease_then_claim_gets_higher_fencing_token(r: Reg) -> ScenarioResult {
    let id = "proc-lease-release";
    setup(&r, standard(id)).await?;
    let first = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&first)).await.ctx("release")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&first)).await.ctx("releasing again (idempotent)")?;
    let second = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("claim after release")?;
    ensure!(
        second.fencing_token > first.fencing_token,
        "fencing tokens are never reused: {} after {}",
        second.fencing_token,
        first.fencing_token
    );
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&second)).await.ctx("release second")?;
    let third = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim again")?;
    ensure!(
        third.fencing_token > second.fencing_token,
        "fencing token {} after {}",
        third.fencing_token,
        second.fencing_token
    );
    Ok(())
}

async fn lease_tokens_differ_between_claims(r: Reg) -> ScenarioResult {
    let mut tokens = std::collections::BTreeSet::new();
    for (index, id) in ["proc-tok-1", "proc-tok-2"].into_iter().enumerate() {
        setup(&r, standard(id)).await?;
        for claim in 0..4 {
            let owner = format!("worker-{index}-{claim}");
            let lease = r.claim_process_lease(id, &owner, 0).await.ctx(format!("claim {claim} on `{id}`"))?;
            ensure!(tokens.insert(lease.lease_token.clone()), "lease token `{}` was issued twice", lease.lease_token);
            ensure!(
                lease.lease_token.len() >= 16,
                "lease token `{}` is too short to be unguessable",
                lease.lease_token
            );
        }
    }
    Ok(())
}
