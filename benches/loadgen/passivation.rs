//! The passivating actor registry the activation and memory phases measure,
//! and waiting for its actors to passivate.

use std::time::{Duration, Instant};

use process_registry::{ActorProcessRegistry, RegistryConfig, RegistryStats};

use crate::Result;

/// How long a process must see no call before its actor passivates, in the
/// activation and memory phases.
pub const PASSIVATION_IDLE: Duration = Duration::from_millis(50);

/// How long waiting for every actor to passivate may take.
const PASSIVATION_DEADLINE: Duration = Duration::from_secs(60);

/// The actor registry the activation and memory phases measure: the ONE
/// place its configuration is decided.
///
/// Passivation of idle process actors (an idle actor stops, its committed
/// state stays in the store in a compact form, and the next call
/// re-activates it) is a [`RegistryConfig`] option, and it is switched on
/// HERE with a short idle time ([`PASSIVATION_IDLE`]), so both phases
/// measure passivated processes whatever the default idle time is. The
/// mailbox bound and everything else stay at their defaults.
pub fn passivating_actor_config() -> RegistryConfig {
    RegistryConfig::default().with_passivation(Some(PASSIVATION_IDLE))
}

/// Waits until no process actor is alive and at least `passivations`
/// passivations have been counted, polling `stats()` every 2 ms and asking
/// for a passivation sweep every half idle time; fails after
/// [`PASSIVATION_DEADLINE`]. Returns the stats it stopped at.
pub async fn until_passivated(actor: &ActorProcessRegistry, passivations: u64) -> Result<RegistryStats> {
    let start = Instant::now();
    let mut swept = start;
    loop {
        let stats = actor.stats();
        if stats.live_actors == 0 && stats.passivations >= passivations {
            return Ok(stats);
        }
        if start.elapsed() > PASSIVATION_DEADLINE {
            return Err(format!(
                "actors did not passivate within {:?}: {} live, {} of {} passivations",
                PASSIVATION_DEADLINE, stats.live_actors, stats.passivations, passivations
            )
            .into());
        }
        if swept.elapsed() >= PASSIVATION_IDLE / 2 {
            actor.passivate_idle();
            swept = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
