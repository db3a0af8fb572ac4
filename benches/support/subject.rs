//! The two registries every figure compares, driven through the same trait
//! object so they pay the same dispatch.

use std::sync::Arc;

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{ActorProcessRegistry, BatchProcessRegistry, ProcessRegistry, RegistryConfig};
use serde::{Deserialize, Serialize};

/// Which registry a figure runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// [`ActorProcessRegistry`]: one actor per process.
    Actor,
    /// [`GlobalLockRegistry`]: all state behind one lock.
    Baseline,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Actor, Kind::Baseline];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Actor => "actor",
            Kind::Baseline => "baseline",
        }
    }
}

/// One registry behind the trait object both kinds are driven through; for
/// the actor kind also the registry itself, for its `stats()` and its
/// `shutdown()`.
pub struct Subject {
    pub registry: Arc<dyn ProcessRegistry>,
    /// The same registry, for batch appends (the loadgen's batch figure;
    /// the criterion benches do not read it).
    #[allow(dead_code)]
    pub batch: Arc<dyn BatchProcessRegistry>,
    pub actor: Option<ActorProcessRegistry>,
}

impl Subject {
    /// A fresh registry of `kind`; the actor one has the default configuration.
    pub async fn start(kind: Kind) -> Result<Self, String> {
        Self::start_with(kind, RegistryConfig::default()).await
    }

    /// A fresh registry of `kind`; `actor_config` configures the actor one
    /// (the baseline has nothing to configure).
    pub async fn start_with(kind: Kind, actor_config: RegistryConfig) -> Result<Self, String> {
        Ok(match kind {
            Kind::Actor => {
                let actor = ActorProcessRegistry::start(actor_config)
                    .await
                    .map_err(|err| format!("starting the actor registry: {err}"))?;
                Self { registry: Arc::new(actor.clone()), batch: Arc::new(actor.clone()), actor: Some(actor) }
            }
            Kind::Baseline => {
                let baseline = Arc::new(GlobalLockRegistry::new());
                Self { registry: Arc::clone(&baseline) as _, batch: baseline, actor: None }
            }
        })
    }

    /// Stops the actor registry's actors; the baseline has none.
    pub async fn shutdown(&self) {
        if let Some(actor) = &self.actor {
            actor.shutdown().await;
        }
    }
}
